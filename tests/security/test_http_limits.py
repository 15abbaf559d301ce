"""Every fleetwatch HTTP server refuses slow, oversized and flooding clients (real sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fleetwatch.lifecycle import AppServer
from fleetwatch.lifecycle._http_limits import HttpLimits
from fleetwatch_testing import free_port, spawned
from tests._support.registry_node import serve_process
from tests._support.slow_clients import TIGHT_LIMITS, probe_slow_clients, read_until_closed


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


def _app() -> Starlette:
    return Starlette(routes=[Route("/echo", _echo, methods=["GET", "POST"])])


@contextlib.asynccontextmanager
async def _server(limits: HttpLimits = TIGHT_LIMITS) -> AsyncIterator[AppServer]:
    async with AppServer(_app(), limits=limits) as server:
        yield server


async def test_slowloris_headers_get_408_and_the_connection_closes() -> None:
    """A client dribbling its headers is answered 408 and cut off at the header deadline."""
    async with _server() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        started = time.monotonic()

        async def dribble() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.05)

        dribbler = asyncio.create_task(dribble())
        data, _ = await read_until_closed(reader, within=5)
        elapsed = time.monotonic() - started
        dribbler.cancel()
        writer.close()
    assert data.startswith(b"HTTP/1.1 408 ")
    assert 0.4 <= elapsed < 2.0


async def test_a_silent_connection_is_closed_at_the_header_deadline() -> None:
    """A connection that never sends a byte does not hold a slot for ever."""
    async with _server() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        data, elapsed = await read_until_closed(reader, within=5)
        writer.close()
    assert data.startswith(b"HTTP/1.1 408 ")
    assert elapsed < 2.0


async def test_a_slow_body_is_cut_off_at_the_read_deadline() -> None:
    """Headers on time but a body that never completes: closed at the read deadline."""
    async with _server() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        await writer.drain()
        data, elapsed = await read_until_closed(reader, within=5)
        writer.close()
    assert b" 200 " not in data  # the app never got a whole body
    assert 1.0 <= elapsed < 3.0


async def test_the_next_request_on_a_kept_alive_connection_has_its_own_deadline() -> None:
    """After a served request, a half-sent second request is cut off too; a prompt one is not."""
    async with _server() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        first = await reader.readuntil(b'{"size":0}')
        writer.write(b"GET /echo HTTP/1.1\r\nHo")
        await writer.drain()
        data, elapsed = await read_until_closed(reader, within=5)
        writer.close()
    assert first.startswith(b"HTTP/1.1 200 ")
    assert data.startswith(b"HTTP/1.1 408 ")
    assert elapsed < 2.0


async def test_a_slow_but_timely_body_is_served() -> None:
    """A body that arrives in pieces within the read deadline is served whole."""
    async with _server() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n")
        for _ in range(3):
            writer.write(b"0123456789")
            await writer.drain()
            await asyncio.sleep(0.2)
        reply = await reader.readuntil(b"}")
        writer.close()
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert reply.endswith(b'{"size":30}')


async def test_size_limits_refuse_with_clear_statuses() -> None:
    """Declared and chunked bodies over the limit get 413 naming it; huge headers get 431."""
    async with _server() as server, httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        declared = await client.post("/echo", content=b"x" * 1001)

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"y" * 300

        chunked = await client.post("/echo", content=chunks())
        headers = await client.get("/echo", headers={"x-big": "z" * 8000})
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(5):  # headers arriving in pieces, past the cap: h11's own check
            writer.write(b"z" * 1000)
            await writer.drain()
            await asyncio.sleep(0.05)
        pieces, _ = await read_until_closed(reader, within=5)
        writer.close()
        fine = await client.post("/echo", content=b"x" * 1000)
    assert declared.status_code == 413
    assert "1000 bytes" in declared.json()["error"]
    assert chunked.status_code == 413
    assert headers.status_code == 431
    assert "4096 bytes" in headers.json()["error"]
    assert pieces.startswith(b"HTTP/1.1 400 ")
    assert fine.json() == {"size": 1000}


async def test_many_slow_clients_do_not_starve_real_ones() -> None:
    """200 slowloris connections at once: a normal request is still served promptly."""
    async with _server() as server:
        writers = []
        for _ in range(200):
            _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
            writers.append(writer)
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            started = time.monotonic()
            reply = await client.get("/echo")
            elapsed = time.monotonic() - started
        for writer in writers:
            writer.close()
    assert reply.status_code == 200
    assert elapsed < 1.0


async def test_too_many_connections_get_503() -> None:
    """Past the connection cap, new requests are refused with 503 instead of piling up."""
    limits = HttpLimits(max_connections=5)
    async with _server(limits) as server:
        held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(6)]
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            reply = await client.get("/echo")
        for _reader, writer in held:
            writer.close()
    assert reply.status_code == 503


async def test_the_serve_command_applies_the_default_header_deadline() -> None:
    """A real `fleetwatch serve` closes a silent connection at its 10 s default, with 408."""
    port = free_port()
    async with serve_process(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        data, elapsed = await read_until_closed(reader, within=20)
        writer.close()
    assert data.startswith(b"HTTP/1.1 408 ")
    assert 9.0 <= elapsed < 12.0


async def test_serve_takes_its_limits_from_the_config(tmp_path: Path) -> None:
    """header_timeout under [registry] sets the deadline; a value out of range is refused at
    start, naming the setting and the allowed range."""
    config = tmp_path / "registry.toml"
    config.write_text('[registry]\nheader_timeout = "1s"\n')
    port = free_port()
    async with serve_process(port, args=("--config", str(config))):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        data, elapsed = await read_until_closed(reader, within=10)
        writer.close()
    bad = tmp_path / "bad.toml"
    bad.write_text("[registry]\nmax_connections = 3\n")
    async with spawned(
        sys.executable, "-m", "fleetwatch", "serve", "--config", str(bad),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    ) as process:  # fmt: skip
        async with asyncio.timeout(30):
            out, _ = await process.communicate()
    assert data.startswith(b"HTTP/1.1 408 ")
    assert 0.8 <= elapsed < 3.0
    assert process.returncode == 64
    assert b"max_connections" in out
    assert b"16" in out


async def test_the_httptools_parser_keeps_every_limit() -> None:
    """With httptools: slowloris gets 408, headers in pieces past the cap get 431 (httptools
    has no cap of its own), a slow body is cut, a fine one served."""
    limits = replace(TIGHT_LIMITS, parser="httptools")
    async with _server(limits) as server:
        probes = await probe_slow_clients(server.port)
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            fine = await client.post("/echo", content=b"x" * 30)
    assert probes.dribbled.startswith(b"HTTP/1.1 408 ")
    assert 0.4 < probes.dribbled_closed_after < 2.0
    assert probes.oversized_headers.startswith(b"HTTP/1.1 431 ")
    assert probes.stalled_body == b""  # closed at the read deadline, nothing answered
    assert 1.0 < probes.stalled_closed_after < 3.0
    assert fine.json() == {"size": 30}


def test_servers_parse_with_httptools_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default limits pick httptools when it can be imported (as here), h11 otherwise."""
    assert importlib.util.find_spec("httptools") is not None  # make test installs every extra
    assert HttpLimits().parser == "httptools"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert HttpLimits().parser == "h11"
