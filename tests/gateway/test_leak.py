"""A client that goes away just after the upstream's headers arrived must release everything.

Once the client is gone, an ASGI server may raise from ``send`` (the ASGI spec asks servers to
raise an OSError there; uvicorn returns silently instead). Starlette's streamed reply sends its
status line before it first iterates the body generator, so when that send raises, the
generator never starts and cleanup written in it never runs: before the exchange, the gateway
kept the admission slot and the upstream request for good (the test timed out at (1, 0): one
slot held, the backend left to generate its whole reply for nobody). The test drives the gateway's
ASGI app by hand to put the disconnect exactly there (a real HTTP client cannot time it),
against a real backend over a real socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from starlette.requests import ClientDisconnect

from fleetwatch.discovery import RegistryClient
from tests._support.gateways import register, routed
from tests._support.waiting import poll_until

STREAMED = {
    "model": "m1",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 4,
    "stream": True,
}


class DisconnectingClient:
    """An ASGI client that goes away the moment the gateway starts its reply: ``receive``
    gives the request, then waits until then and says disconnect; ``send`` raises for the
    status line, as a server that saw the connection close may."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.calls = 0
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 1:
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.gone.set()
        if self.gone.is_set():
            raise OSError("the client closed the connection")


async def test_disconnect_right_after_upstream_headers_releases_the_slot(
    api: RegistryClient, gateways: Any, backends: Any
) -> None:
    """The admission slot, the in-flight count and the upstream request are all released."""
    backend = await backends(model="m1", tokens=50, token_delay=0.05)
    await register(api, "one", backend.port, model="m1")
    gateway = await gateways(strategy="round-robin")
    await routed(gateway, 1)
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"host", b"gateway")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    app = gateway.gateway.app()
    client = DisconnectingClient(json.dumps(STREAMED).encode())
    with contextlib.suppress(OSError, ClientDisconnect):
        await asyncio.wait_for(app(scope, client.receive, client.send), timeout=10)

    async def released() -> tuple[int, int]:
        key = ("llm", "one")
        return (
            gateway.gateway.admission.in_flight.get(key, 0),
            backend.state.in_flight,
        )

    await poll_until(released, (0, 0), within=5)
    assert backend.state.cancelled == 1  # the upstream generation was dropped
