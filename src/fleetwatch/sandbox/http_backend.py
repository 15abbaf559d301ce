"""A small real HTTP server to check against: fixed latency, chosen status, chosen body.

Runs in its own process (``python -m fleetwatch.sandbox.http_backend --port P --delay 0.2``) or
in-process with :class:`HttpBackend`. Routes:

- ``/`` and ``/health`` answer after ``--delay``;
- ``/status/{code}`` answers with that code; ``/sleep/{seconds}`` answers after that long;
- ``/count`` tells how many requests arrived;
- ``/headers`` echoes the request headers, ``/last-headers`` repeats the last ones it saw;
- ``/peer`` tells the client's address and port (the same port twice: a reused connection).
"""

from __future__ import annotations

import argparse
import asyncio

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fleetwatch.lifecycle.serving import AppServer


def backend_app(delay: float = 0.0, body: str = "ok") -> Starlette:
    """The backend's ASGI app."""
    hits = {"count": 0}
    last_headers: dict[str, str] = {}

    async def health(request: Request) -> Response:
        hits["count"] += 1
        if delay:
            await asyncio.sleep(delay)
        return Response(body, media_type="text/plain")

    async def status(request: Request) -> Response:
        hits["count"] += 1
        code = int(request.path_params["code"])
        headers = {"Retry-After": "1"} if code in (429, 503) else None
        return Response(f"status {code}", code, headers, "text/plain")

    async def sleep(request: Request) -> Response:
        hits["count"] += 1
        await asyncio.sleep(float(request.path_params["seconds"]))
        return Response(body, media_type="text/plain")

    async def count(request: Request) -> Response:
        return JSONResponse(hits)

    async def headers(request: Request) -> Response:
        last_headers.clear()
        last_headers.update(request.headers)
        return JSONResponse(last_headers)

    async def seen_headers(request: Request) -> Response:
        return JSONResponse(last_headers)

    async def peer(request: Request) -> Response:
        client = request.client
        return JSONResponse(
            {"host": client.host if client else None, "port": client and client.port}
        )

    return Starlette(
        routes=[
            Route("/", health),
            Route("/health", health),
            Route("/status/{code:int}", status),
            Route("/sleep/{seconds:float}", sleep),
            Route("/count", count),
            Route("/headers", headers),
            Route("/last-headers", seen_headers),
            Route("/peer", peer),
        ]
    )


class HttpBackend(AppServer):
    """The backend served inside the running event loop on a free loopback port."""

    def __init__(self, *, delay: float = 0.0, body: str = "ok", port: int = 0) -> None:
        super().__init__(backend_app(delay, body), port=port)


def main() -> None:
    """Serve the backend in this process until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    uvicorn.run(backend_app(args.delay), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
