"""A small real HTTP server to check against: fixed latency, chosen status, chosen body.

Runs in its own process (``python -m fleetwatch_testing --port P --delay 0.2``) or
in-process with :class:`HttpBackend`. Routes:

- ``/`` and ``/health`` answer after ``--delay``;
- ``/status/{code}`` answers with that code; ``/sleep/{seconds}`` answers after that long;
- ``/slow-every/{n}/{seconds}`` answers every n-th request only after that long;
- ``/count`` tells how many requests arrived, and per fleetwatch monitor node (``?reset=1``
  starts counting again);
- ``/headers`` echoes the request headers, ``/last-headers`` repeats the last ones it saw;
- ``/peer`` tells the client's port and ``/peers`` every port seen there (the same port
  twice: a reused connection).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fleetwatch.lifecycle._app_server import AppServer
from fleetwatch_testing._process import LocalServer
from fleetwatch_testing.ports import free_port, port_open


def backend_app(delay: float = 0.0, body: str = "ok") -> Starlette:
    """The backend's ASGI app."""
    hits = {"count": 0}
    last_headers: dict[str, str] = {}
    peer_ports: list[int | None] = []
    by_node: dict[str, int] = {}

    async def health(request: Request) -> Response:
        hits["count"] += 1
        node = request.headers.get("x-fleetwatch-node")
        if node:
            by_node[node] = by_node.get(node, 0) + 1
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

    async def slow_every(request: Request) -> Response:
        hits["count"] += 1
        hits["slow_every"] = hits.get("slow_every", 0) + 1
        if hits["slow_every"] % int(request.path_params["n"]) == 0:
            await asyncio.sleep(float(request.path_params["seconds"]))
        return Response(body, media_type="text/plain")

    async def count(request: Request) -> Response:
        if request.query_params.get("reset"):
            hits["count"] = 0
            by_node.clear()
        return JSONResponse({**hits, "by_node": by_node})

    async def headers(request: Request) -> Response:
        last_headers.clear()
        last_headers.update(request.headers)
        return JSONResponse(last_headers)

    async def seen_headers(request: Request) -> Response:
        return JSONResponse(last_headers)

    async def peer(request: Request) -> Response:
        port = request.client.port if request.client else None
        peer_ports.append(port)
        return JSONResponse({"port": port})

    async def peers(request: Request) -> Response:
        return JSONResponse({"ports": peer_ports})

    return Starlette(
        routes=[
            Route("/", health),
            Route("/health", health),
            Route("/status/{code:int}", status),
            Route("/sleep/{seconds:float}", sleep),
            Route("/slow-every/{n:int}/{seconds:float}", slow_every),
            Route("/count", count),
            Route("/headers", headers),
            Route("/last-headers", seen_headers),
            Route("/peer", peer),
            Route("/peers", peers),
        ]
    )


class BackendProcess(LocalServer):
    """The backend in a process of its own (``python -m fleetwatch_testing``), on loopback."""

    def __init__(self, *, delay: float = 0.0, port: int | None = None) -> None:
        super().__init__(prefix="fleetwatch-backend-", log_name="backend.log")
        self.delay = delay
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the process and wait until it accepts connections."""
        argv = [sys.executable, "-m", "fleetwatch_testing", "--port", str(self.port)]
        self._process.spawn([*argv, "--delay", str(self.delay)])
        self._await_ready(
            lambda: port_open("127.0.0.1", self.port), timeout, f"HTTP backend on port {self.port}"
        )


class HttpBackend(AppServer):
    """The backend served inside the running event loop on a free loopback port."""

    def __init__(self, *, delay: float = 0.0, body: str = "ok", port: int = 0) -> None:
        # A test server owes a sleeping request nothing at shutdown: cancel it after a second.
        super().__init__(backend_app(delay, body), port=port, timeout_graceful_shutdown=1)


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
