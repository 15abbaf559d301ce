"""A lean HTTP/1.1 client for the gateway's upstream requests: keep-alive connections per
origin, one request at a time on each, parsed by httptools on asyncio protocols.

The gateway sends every proxied request through here, so it is the hot path's other half.
aiohttp's client spent about a third of the gateway's time per request on request objects,
auto headers, payload wrappers and timers (py-spy under wrk); this client writes a request in
one ``write`` and hands back the reply's status, headers and body as they arrive.

Timeouts: connecting is bounded by ``connect_timeout``; between two pieces of a reply (its
headers, then each chunk of its body) at most ``read_timeout`` passes. The whole request's
deadline is the caller's (``asyncio.timeout``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httptools

#: A reply body buffered beyond this pauses reading from the server until it is consumed.
HIGH_WATER_BYTES = 1 << 20


class UpstreamError(Exception):
    """The upstream request failed: the server could not be reached, or broke its reply."""


class ConnectFailed(UpstreamError):
    """No connection to the server (refused, unreachable, or no answer in time)."""


class ClosedBeforeReply(UpstreamError):
    """The server closed the connection before any byte of the reply. On a kept-alive
    connection that is a server closing it while idle, as it may at any moment (llama.cpp
    does without saying so): the request never reached it."""


class ReadTimeout(UpstreamError, TimeoutError):
    """The server sent nothing for longer than the read timeout."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: scheme, host and port."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        """The origin of ``http(s)://host:port`` (IPv6 hosts in brackets)."""
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("http", "https"):
            raise ValueError(f"{url!r}: expected http://host:port or https://host:port")
        authority = rest.split("/", 1)[0]
        host, _, port = authority.rpartition(":")
        if not host or "]" in port:  # no port given
            host, port = authority, "443" if scheme == "https" else "80"
        return cls(scheme, host.strip("[]"), int(port))

    @property
    def host_header(self) -> bytes:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}".encode()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self, pool: UpstreamPool, origin: Origin) -> None:
        self._pool = pool
        self.origin = origin
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_until = 0.0
        self._response: Response | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        #: Some byte of the reply in progress arrived.
        self._replied = False

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        self._replied = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"the server sent a malformed reply ({exc})"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close: a reply still open fails in connection_lost

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        response = self._response
        if exc is None and response is not None and response.ends_at_close():
            self._response = None
            response.completed(keep_alive=False)  # a body without length ends with the stream
            return
        reason = f": {exc}" if exc else ""
        if response is not None and not self._replied:
            self._fail(
                ClosedBeforeReply(f"the server closed the connection before replying{reason}")
            )
        else:
            self._fail(UpstreamError(f"the server closed the connection{reason}"))

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        response = self._response
        if response is not None:
            response.started(self._parser.get_status_code(), self._headers)

    def on_body(self, body: bytes) -> None:
        response = self._response
        if response is not None:
            response.received(body)

    def on_message_complete(self) -> None:
        response = self._response
        if response is not None:
            response.completed(self._parser.should_keep_alive())

    # -- the client's side ------------------------------------------------------------------

    def send(self, head: bytes, body: bytes) -> Response:
        assert self.transport is not None
        assert self._response is None
        response = self._response = Response(self, self._loop, self._pool.read_timeout)
        self._replied = False
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)  # a large body is not copied into the head
        return response

    def finished(self, response: Response, reusable: bool) -> None:
        """``response`` was read to its end (``reusable``: keep the connection)."""
        if self._response is response:
            self._response = None
        if reusable and not self.closed:
            self._pool.put_back(self)
        else:
            self.close()

    def _fail(self, error: UpstreamError) -> None:
        response, self._response = self._response, None
        if response is not None:
            response.failed(error)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()
        self._pool.forget(self)


class Response:
    """A reply from upstream: ``status`` and ``headers`` once :meth:`UpstreamPool.request`
    returns, the body through :meth:`read` or :meth:`chunks`. :meth:`close` it when done (a
    reply read to its end gives its connection back to the pool)."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_connection",
        "_done",
        "_error",
        "_loop",
        "_paused",
        "_read_timeout",
        "_reusable",
        "_waiter",
        "complete",
        "headers",
        "status",
    )

    def __init__(
        self, connection: _Connection, loop: asyncio.AbstractEventLoop, read_timeout: float
    ) -> None:
        self._connection = connection
        self._loop = loop
        self._read_timeout = read_timeout
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: UpstreamError | None = None
        self._paused = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        #: The whole reply arrived.
        self.complete = False
        self._done = False
        self._reusable = False

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (any case), decoded as latin-1."""
        wanted = name.encode().lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None

    def ends_at_close(self) -> bool:
        """Whether the body is the rest of the stream: no length, not chunked (RFC 9112 6.3)."""
        if not self.status or self.complete:
            return False
        names = {key.lower() for key, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    # -- fed by the connection --------------------------------------------------------------

    def started(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status, self.headers = status, headers
        self._wake()

    def received(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > HIGH_WATER_BYTES and not self._paused:
            transport = self._connection.transport
            if transport is not None:
                transport.pause_reading()
                self._paused = True
        self._wake()

    def completed(self, keep_alive: bool) -> None:
        self.complete = True
        self._reusable = keep_alive
        self._wake()

    def failed(self, error: UpstreamError) -> None:
        self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- read by the caller -----------------------------------------------------------------

    async def _wait(self) -> None:
        """Until the connection feeds something (or fails, or the read timeout passes)."""
        if self._error is not None:
            raise self._error
        waiter = self._waiter = self._loop.create_future()
        after = self._read_timeout
        timer = self._loop.call_later(after, _expire, waiter, after)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self._error is not None:
            raise self._error

    async def wait_started(self) -> None:
        while not self.status:
            await self._wait()

    def _take(self) -> bytes:
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if self._paused:
            self._paused = False
            transport = self._connection.transport
            if transport is not None:
                transport.resume_reading()
        return data

    async def read(self) -> bytes:
        """The whole body."""
        while not self.complete:
            await self._wait()
        body = self._take()
        self._finish()
        return body

    async def read_some(self, limit: int) -> bytes:
        """At most about ``limit`` bytes of the body (what has come, or the end)."""
        while not self.complete and self._buffered < limit:
            await self._wait()
        return self._take()[:limit]

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: everything received since the last chunk, each time."""
        while True:
            if self._chunks:
                yield self._take()
            if self.complete:
                self._finish()
                return
            await self._wait()

    def tighten(self, read_timeout: float) -> None:
        """From now on, wait at most ``read_timeout`` for each piece (a stream's tokens)."""
        self._read_timeout = read_timeout

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._connection.finished(self, self._reusable and not self._chunks)

    def close(self) -> None:
        """Done with this reply: a reply read to its end frees its connection for the next
        request; one not read to its end drops it (the server stops sending)."""
        if self._done:
            return
        self._done = True
        self._connection.finished(self, self.complete and self._reusable and not self._chunks)


def _expire(waiter: asyncio.Future[None], after: float) -> None:
    if not waiter.done():
        waiter.set_exception(ReadTimeout(f"no reply from the server within {after:g}s"))


class UpstreamPool:
    """Keep-alive connections to any number of origins. ``async with UpstreamPool() as pool``.

    Idle connections are dropped after ``keepalive`` seconds, before the servers' own
    keep-alive timeouts (llama.cpp's and uvicorn's: 5 s), so a request never goes out on a
    connection the server is closing at that moment.
    """

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        keepalive: float = 3.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive = keepalive
        self._ssl = ssl_context
        self._idle: dict[Origin, list[_Connection]] = {}
        self._all: set[_Connection] = set()
        self._origins: dict[str, Origin] = {}
        #: Requests sent again on a new connection: their kept-alive one was closed idle.
        self.reopened = 0

    async def __aenter__(self) -> UpstreamPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def origin(self, base_url: str) -> Origin:
        """``base_url``'s origin (parsed once per URL)."""
        origin = self._origins.get(base_url)
        if origin is None:
            origin = self._origins[base_url] = Origin.of(base_url)
        return origin

    async def request(
        self, base_url: str, method: str, path: str, headers: bytes, body: bytes = b""
    ) -> Response:
        """Send ``method path`` to ``base_url`` with ``headers`` (each ``name: value\\r\\n``,
        no Host, no Content-Length) and ``body``; returns once the reply's headers are in.
        Raises :class:`ConnectFailed`, :class:`ReadTimeout` or :class:`UpstreamError`."""
        origin = self.origin(base_url)
        head = b"%s %s HTTP/1.1\r\nhost: %s\r\ncontent-length: %d\r\n%s\r\n" % (
            method.encode(),
            path.encode(),
            origin.host_header,
            len(body),
            headers,
        )
        reused = self._idle_connection(origin)
        if reused is not None:
            try:
                return await self._send(reused, head, body)
            except ClosedBeforeReply:
                # Closed while idle (the server's keep-alive ran out first): the request
                # never reached it, so it goes again on a new connection, to the same server.
                self.reopened += 1
        return await self._send(await self._connect(origin), head, body)

    @staticmethod
    async def _send(connection: _Connection, head: bytes, body: bytes) -> Response:
        response = connection.send(head, body)
        try:
            await response.wait_started()
        except BaseException:
            response.close()
            raise
        return response

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = asyncio.get_running_loop().time()
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.idle_until > now:
                return connection
            connection.close()
        return None

    async def _connect(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        tls: dict[str, Any] = {}
        if origin.scheme == "https":
            tls = {"ssl": self._ssl or ssl.create_default_context(), "server_hostname": origin.host}
        try:
            async with asyncio.timeout(self.connect_timeout):
                transport, connection = await loop.create_connection(
                    lambda: _Connection(self, origin), origin.host, origin.port, **tls
                )
        except TimeoutError:
            raise ConnectFailed(
                f"no connection to {origin.host}:{origin.port} within {self.connect_timeout:g}s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"cannot connect to {origin.host}:{origin.port}: {exc}") from exc
        # uvloop may return before it has called connection_made.
        connection.transport = transport
        self._all.add(connection)
        return connection

    def put_back(self, connection: _Connection) -> None:
        connection.idle_until = asyncio.get_running_loop().time() + self.keepalive
        self._idle.setdefault(connection.origin, []).append(connection)

    def forget(self, connection: _Connection) -> None:
        self._all.discard(connection)
        idle = self._idle.get(connection.origin)
        if idle and connection in idle:
            idle.remove(connection)

    @property
    def open_connections(self) -> int:
        """Connections open now, idle or in use."""
        return len(self._all)

    async def aclose(self) -> None:
        """Close every connection."""
        for connection in list(self._all):
            connection.close()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their connection_lost
