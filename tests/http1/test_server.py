"""fleetwatch's lean HTTP/1.1 server (the gateway's front end) over real sockets: its limits,
keep-alive, pipelining, chunked replies, the client-gone future and a graceful close."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.types import Receive, Scope, Send

from fleetwatch.http1 import LeanServer
from fleetwatch.lifecycle._http_limits import HttpLimits
from tests._support.slow_clients import TIGHT_LIMITS, probe_slow_clients, read_until_closed


class _App:
    """Echoes the body's size; /stream sends three chunks; /slow waits for the client to go."""

    def __init__(self) -> None:
        self.gone: list[bool] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = (await receive())["body"]
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for part in (b"one ", b"two ", b"three"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if scope["path"] == "/slow":
            gone = scope["extensions"]["fleetwatch.client_gone"]
            self.gone.append(await gone)
            return
        reply = b'{"size": %d, "path": "%s"}' % (len(body), scope["path"].encode())
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": reply})


@contextlib.asynccontextmanager
async def _server(app: Any = None, limits: HttpLimits = TIGHT_LIMITS) -> AsyncIterator[LeanServer]:
    async with LeanServer(app or _App(), limits=limits) as server:
        yield server


async def test_keep_alive_chunked_streams_and_a_date() -> None:
    """Requests on one kept-alive connection are answered with a length and a date; a reply
    of unknown length is chunked and arrives whole."""
    async with _server() as server, httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        first = await client.post("/echo", content=b"x" * 30)
        second = await client.get("/again")
        streamed = await client.get("/stream")
    assert first.json() == {"size": 30, "path": "/echo"}
    assert second.json()["path"] == "/again"
    assert first.headers["content-length"] == str(len(first.content))
    assert "date" in first.headers
    assert streamed.headers["transfer-encoding"] == "chunked"
    assert streamed.text == "one two three"


async def test_pipelined_requests_are_answered_in_order() -> None:
    """Two requests written at once on one connection get their two replies, in order."""
    async with _server() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data, _ = await read_until_closed(reader, within=5)
        writer.close()
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert data.index(b'"/a"') < data.index(b'"/b"')


async def test_limits_408_431_413_and_a_slow_body_cut() -> None:
    """Slowloris headers get 408 at the header deadline; headers in pieces past the cap get
    431; a declared body over the limit gets 413 (read to the end, not reset); a body that
    stops arriving is cut at the read deadline; the server still serves afterwards."""
    async with _server() as server:
        probes = await probe_slow_clients(server.port)
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            too_large = await client.post("/echo", content=b"x" * 5000)
            fine = await client.post("/echo", content=b"x" * 10)
    assert probes.dribbled.startswith(b"HTTP/1.1 408 ")
    assert 0.4 < probes.dribbled_closed_after < 2.0
    assert probes.oversized_headers.startswith(b"HTTP/1.1 431 ")
    assert too_large.status_code == 413
    assert "1000 bytes" in too_large.json()["error"]
    assert fine.json()["size"] == 10
    assert probes.stalled_body == b""
    assert 1.0 < probes.stalled_closed_after < 3.0


async def test_a_client_that_leaves_resolves_client_gone() -> None:
    """The client-gone future turns True when the client disconnects mid-request, so the app
    can stop its work without a task watching receive()."""
    app = _App()
    async with _server(app) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        async with asyncio.timeout(5):
            while not app.gone:  # noqa: ASYNC110 - the server's task sets it
                await asyncio.sleep(0.02)
        del reader
    assert app.gone == [True]


async def test_close_lets_a_request_in_progress_finish() -> None:
    """Closing the server stops new connections but the request in progress is answered."""

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await asyncio.sleep(0.5)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    server = LeanServer(slow_app)
    await server.start()
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        pending = asyncio.create_task(client.get("/"))
        await asyncio.sleep(0.2)
        await server.aclose()
        reply = await pending
        try:
            await client.get("/", headers={"connection": "close"})
            refused = False
        except httpx.ConnectError:
            refused = True
    assert reply.text == "done"
    assert reply.headers.get("connection") == "close"
    assert refused


async def test_an_app_that_fails_gets_a_500_and_the_server_goes_on() -> None:
    """An app raising before it replies gives the client 500; the next request is served."""
    calls = 0

    async def flaky(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        await _App()(scope, receive, send)

    async with _server(flaky) as server, httpx.AsyncClient(base_url=server.url, timeout=5) as c:
        failed = await c.get("/one")
        served = await c.get("/two")
    assert failed.status_code == 500
    assert served.json()["path"] == "/two"
