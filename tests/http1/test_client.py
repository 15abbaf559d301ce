"""fleetwatch's lean upstream client against real servers on loopback: connection reuse, a
reply not read to its end dropping its connection, streamed bodies, timeouts and failures."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from fleetwatch.http1 import ConnectFailed, Origin, ReadTimeout, UpstreamError, UpstreamPool
from fleetwatch_testing import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def _raw_server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A server answering with ``handler``; yields its URL and a count of connections."""
    connections: list[int] = []

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(counted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", connections


async def _keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request on the connection with its path, until the client leaves."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return
        path = head.split(b" ")[1]
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(path), path))
        await writer.drain()


async def _pool() -> UpstreamPool:
    return UpstreamPool(connect_timeout=2, read_timeout=1)


async def test_a_connection_is_reused_and_an_unread_reply_drops_it() -> None:
    """Replies read to their end leave one connection for every request; a reply closed
    before its end is dropped with its connection, so the next request opens another."""
    async with _raw_server(_keep_alive) as (url, connections), await _pool() as pool:
        for path in ("/a", "/b", "/c"):
            reply = await pool.request(url, "GET", path, b"")
            assert await reply.read() == path.encode()
            reply.close()
        unread = await pool.request(url, "GET", "/d", b"")
        unread.close()
        again = await pool.request(url, "GET", "/e", b"")
        body = await again.read()
        again.close()
    assert body == b"/e"
    assert len(connections) == 2


async def test_a_streamed_body_comes_as_it_is_sent() -> None:
    """Chunked pieces arrive before the reply ends, then the end."""
    sent = asyncio.Event()

    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await sent.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()

    async with _raw_server(stream) as (url, _), await _pool() as pool:
        reply = await pool.request(url, "POST", "/s", b"", b"{}")
        pieces = []
        async for chunk in reply.chunks():
            pieces.append(chunk)
            sent.set()
        reply.close()
    assert pieces == [b"first", b"second"]
    assert reply.complete


async def test_a_body_without_length_ends_with_the_connection() -> None:
    """A reply with neither length nor chunking is read until the server closes."""

    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await writer.drain()

    async with _raw_server(until_close) as (url, _), await _pool() as pool:
        reply = await pool.request(url, "GET", "/", b"")
        body = await reply.read()
    assert body == b"all of it"


async def test_silence_is_a_read_timeout_and_a_cut_reply_an_error() -> None:
    """A server that never answers raises ReadTimeout after the read timeout; one that closes
    mid-body raises UpstreamError; a port nobody listens on raises ConnectFailed."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
        await writer.drain()

    async with await _pool() as pool:
        async with _raw_server(silent) as (url, _):
            with pytest.raises(ReadTimeout, match="within 1s"):
                await pool.request(url, "GET", "/", b"")
        async with _raw_server(cut) as (url, _):
            reply = await pool.request(url, "GET", "/", b"")
            with pytest.raises(UpstreamError, match="closed"):
                await reply.read()
        with pytest.raises(ConnectFailed, match="cannot connect"):
            await pool.request(f"http://127.0.0.1:{free_port()}", "GET", "/", b"")
    assert pool.open_connections == 0


def test_origins_parse_and_bad_urls_say_what_is_expected() -> None:
    """http(s) URLs give their origin (default ports, IPv6 in brackets); others are refused."""
    assert Origin.of("http://10.0.0.5:8000") == Origin("http", "10.0.0.5", 8000)
    assert Origin.of("https://llm.example") == Origin("https", "llm.example", 443)
    assert Origin.of("http://[::1]:9000/v1") == Origin("http", "::1", 9000)
    assert Origin("http", "::1", 9000).host_header == b"[::1]:9000"
    with pytest.raises(ValueError, match="expected http://host:port"):
        Origin.of("ftp://x:1")


async def test_a_connection_closed_while_idle_is_replaced_for_the_same_request() -> None:
    """A server that drops a kept-alive connection as the next request arrives, without a
    byte of reply (llama.cpp closes idle ones without saying so): the request goes again on
    a new connection, to the same server, and succeeds; the pool counts it."""

    async def one_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")  # says keep-alive
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the next request: dropped, unanswered

    async with _raw_server(one_per_connection) as (url, connections), await _pool() as pool:
        first = await pool.request(url, "GET", "/", b"")
        assert await first.read() == b"ok"
        first.close()
        second = await pool.request(url, "POST", "/", b"", b"{}")
        body = await second.read()
        second.close()
    assert body == b"ok"
    assert len(connections) == 2
    assert pool.reopened == 1


async def test_a_fresh_connection_closed_before_replying_is_an_error() -> None:
    """On a new connection, a close before any reply is the server's failure: no second try
    there (the gateway tries another instance)."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")

    async with _raw_server(hang_up) as (url, connections), await _pool() as pool:
        with pytest.raises(UpstreamError, match="before replying"):
            await pool.request(url, "GET", "/", b"")
    assert len(connections) == 1
    assert pool.reopened == 0
