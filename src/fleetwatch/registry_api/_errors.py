"""Errors as HTTP answers: each names what was wrong."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from fleetwatch.errors import RegistryError
from fleetwatch.registry_api._blocking import ClientGone
from fleetwatch.registry_api._schemas import ErrorReply

#: Documented in the OpenAPI schema of every route.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorReply} for code in (400, 401, 403, 404, 409, 410, 413, 422, 503)
}


def status_of(exc: RegistryError) -> int:
    """The HTTP status for a registry error (its ``status_code``)."""
    return exc.status_code


def registry_error_body(exc: RegistryError) -> dict[str, str]:
    """A registry error as an answer's body: what was wrong, and the instance it concerns."""
    body: dict[str, str] = {"error": str(exc)}
    if exc.service is not None:
        body["service"] = exc.service
    if exc.instance_id is not None:
        body["instance_id"] = exc.instance_id
    return body


def install_handlers(app: FastAPI) -> None:
    """Registry errors, validation errors and bad values as ``{"error": "..."}``."""

    @app.exception_handler(RegistryError)
    async def registry_error(request: Request, exc: RegistryError) -> JSONResponse:
        return JSONResponse(registry_error_body(exc), status_of(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = [str(p) for p in error["loc"] if p not in ("body", "query", "path", "header")]
            field = ".".join(where) or "body"
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"field {field!r}: {message}")
        return JSONResponse({"error": "; ".join(problems)}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method the path supports, not one route's
            headers["Allow"] = ", ".join(sorted(_methods(request)))
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=headers)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone) -> Response:
        # Nobody is listening; nginx's 499 "client closed request" for the access log.
        return Response(status_code=499)

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, 400)


def _methods(request: Request) -> set[str]:
    """Methods of every route whose path matches the request's."""
    path = request.url.path
    return {
        method
        for route in request.app.router.routes
        if isinstance(route, Route) and route.path_regex.match(path) and route.methods
        for method in route.methods
    }
