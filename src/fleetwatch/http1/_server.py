"""A lean HTTP/1.1 server for ASGI apps: the gateway's front end.

uvicorn spent about a quarter of the gateway's time per request (py-spy under wrk): its
request cycle object, its flow-control wrappers, and the middleware stack each request
crosses. This server does only what the gateway needs, in the protocol callbacks:

- requests parsed by httptools; the body is read whole before the app runs (the gateway reads
  it whole anyway), refused with 413 above ``max_body_bytes`` as soon as that is known;
- one task per request, one ``write`` per whole reply (status line, headers and body), chunked
  transfer encoding for replies of unknown length (streams);
- the limits of :class:`~fleetwatch.lifecycle._http_limits.HttpLimits`: the header deadline
  (408), the read deadline, the header size (431), concurrent connections (503), idle
  keep-alive connections closed after ``keep_alive``;
- a client that goes away resolves ``scope["extensions"]["fleetwatch.client_gone"]`` (a
  future), so the app can cancel its work without a task watching ``receive``;
- :meth:`LeanServer.aclose` stops accepting, lets requests in progress finish (10 s at most)
  and closes idle connections.

It serves ``http`` scopes only: no lifespan, no websockets (the gateway has neither).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote_to_bytes

import httptools
from starlette.types import ASGIApp, Message

from fleetwatch._async_resource import AsyncResource
from fleetwatch.errors import ServeError
from fleetwatch.lifecycle._http_limits import HttpLimits, plain_error

log = logging.getLogger("fleetwatch.http1")

#: Seconds requests in progress get to finish when the server closes.
SHUTDOWN_GRACE_S = 10.0
#: Seconds a refused client's remaining bytes are read and discarded before closing.
LINGER_S = 2.0
_STATUS_PHRASES = {
    200: b"OK", 201: b"Created", 204: b"No Content", 400: b"Bad Request",
    401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found", 405: b"Method Not Allowed",
    408: b"Request Timeout", 413: b"Content Too Large", 422: b"Unprocessable Content",
    429: b"Too Many Requests", 431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 502: b"Bad Gateway", 503: b"Service Unavailable",
    504: b"Gateway Timeout",
}  # fmt: skip
_NO_BODY_STATUS = frozenset({204, 304})
#: The ``asgi`` key of every scope (one object: apps read it, none writes it).
_ASGI = {"version": "3.0", "spec_version": "2.3"}


class _Clock:
    """The ``date`` header, formatted once per second."""

    second = 0
    value = b""

    @classmethod
    def date(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.second, cls.value = now, formatdate(now, usegmt=True).encode()
        return cls.value


def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _STATUS_PHRASES.get(status, b"Status"))


def _error_reply(status: int, body: dict[str, Any], *, close: bool) -> bytes:
    content = json.dumps(body).encode()
    return b"%sdate: %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        _status_line(status),
        _Clock.date(),
        len(content),
        b"connection: close\r\n" if close else b"",
        content,
    )


class _Request:
    """One request as it is parsed, then as the app serves it."""

    __slots__ = (
        "bodiless",
        "body",
        "chunked",
        "client_gone",
        "declared",
        "ended",
        "head",
        "headers",
        "keep_alive",
        "method",
        "received",
        "url",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.received = 0
        self.method = b""
        self.keep_alive = True
        #: The reply's status line went out / its last byte went out.
        self.head = False
        self.ended = False
        self.chunked = False
        self.bodiless = False
        #: The content-length header's value, if any.
        self.declared: bytes | None = None
        #: True once the client went away before the reply ended; False once it ended.
        self.client_gone: asyncio.Future[bool] = loop.create_future()


class _Connection(asyncio.Protocol):
    """One client connection: requests in order, each served by the app in its own task."""

    def __init__(self, server: LeanServer) -> None:
        self._server = server
        self._limits = server.limits
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._addresses: tuple[Any, Any] = (None, None)
        self._parsing: _Request | None = None
        self._header_bytes = 0
        self._queue: deque[_Request] = deque()
        self._serving: asyncio.Task[None] | None = None
        self._current: _Request | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._header_armed = False
        #: Between the end of one request's headers and the end of its body.
        self._in_body = False
        self._unparsed_head = 0
        self._drained: asyncio.Future[None] | None = None
        self.closed = False
        self.closing = False

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a stream transport
        self._server.connections.add(self)
        self._addresses = (
            transport.get_extra_info("sockname"),
            transport.get_extra_info("peername"),
        )
        if len(self._server.connections) > self._limits.max_connections:
            self._refuse(503, "too many connections; try again shortly")
            return
        self._arm(self._limits.header_timeout, self._header_deadline)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if not self._in_body:
            self._unparsed_head += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            if not self.closed:
                self._refuse(400, f"malformed HTTP request ({exc})")
        # httptools reports a header only once it is complete: a header that never ends is
        # measured here, by what arrived before the end of the headers.
        if not self._in_body and self._unparsed_head > self._limits.max_header_bytes:
            self._refuse(431, "the request headers are larger than the limit")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        self._server.connections.discard(self)
        for request in (self._current, *self._queue, self._parsing):
            if request is not None and not request.client_gone.done():
                request.client_gone.set_result(True)
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._parsing = _Request(self._loop)
        self._header_bytes = 0
        if self._serving is None and not self._header_armed:
            # A kept-alive connection's next request: its headers are due from its first byte.
            self._arm(self._limits.header_timeout, self._header_deadline)

    def on_url(self, url: bytes) -> None:
        assert self._parsing is not None
        self._parsing.url += url
        self._count_header(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self._parsing
        assert request is not None
        name = name.lower()
        request.headers.append((name, value))
        if name == b"content-length":
            request.declared = value
        self._count_header(len(name) + len(value) + 4)

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self._limits.max_header_bytes:
            self._refuse(431, "the request headers are larger than the limit")

    def on_headers_complete(self) -> None:
        request = self._parsing
        assert request is not None
        request.method = self._parser.get_method()
        request.keep_alive = self._parser.should_keep_alive()
        self._in_body = True
        self._arm(self._limits.read_timeout, self._read_deadline)
        limit = self._server.max_body_bytes
        declared = request.declared
        too_large = declared is not None and declared.isdigit() and int(declared) > (limit or 0)
        if limit is not None and too_large:
            self._refuse(413, f"request body larger than {limit} bytes", self._server.refuse)
            return
        if (b"expect", b"100-continue") in request.headers and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        request = self._parsing
        assert request is not None
        request.body.append(body)
        request.received += len(body)
        limit = self._server.max_body_bytes
        if limit is not None and request.received > limit:
            self._refuse(413, f"request body larger than {limit} bytes", self._server.refuse)

    def on_message_complete(self) -> None:
        request, self._parsing = self._parsing, None
        assert request is not None
        self._in_body, self._unparsed_head = False, 0
        if self.closed:
            return
        self._disarm()
        self._queue.append(request)
        if self._serving is None:
            self._next()
        elif self._transport is not None:
            self._transport.pause_reading()  # pipelined: one waits, no more are read

    # -- serving ----------------------------------------------------------------------------

    def _next(self) -> None:
        if not self._queue:
            return
        request = self._current = self._queue.popleft()
        task = self._loop.create_task(self._serve(request))
        self._serving = task
        task.add_done_callback(self._served)

    def _served(self, task: asyncio.Task[None]) -> None:
        self._serving = self._current = None
        if not task.cancelled() and task.exception() is not None:
            log.error("serving a request failed", exc_info=task.exception())
        if self.closed:
            return
        if self.closing and not self._queue:
            self.close()
            return
        if self._queue:
            self._next()
            return
        if self._transport is not None:
            self._transport.resume_reading()
        if self._parsing is None:
            self._arm(self._limits.keep_alive, self.close)

    async def _serve(self, request: _Request) -> None:
        raw_path, _, query = request.url.partition(b"?")
        server, client = self._addresses
        scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": "1.1",
            "server": server[:2] if server else None,
            "client": client[:2] if client else None,
            "scheme": self._server.scheme,
            "method": request.method.decode("ascii"),
            "root_path": "",
            "path": raw_path.decode("latin-1") if b"%" not in raw_path else _unquote(raw_path),
            "raw_path": raw_path,
            "query_string": query,
            "headers": request.headers,
            "extensions": {"fleetwatch.client_gone": request.client_gone},
        }
        body_sent = False

        async def receive() -> Message:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                body = request.body[0] if len(request.body) == 1 else b"".join(request.body)
                return {"type": "http.request", "body": body, "more_body": False}
            if not request.ended and not self.closed:
                await asyncio.shield(request.client_gone)
            return {"type": "http.disconnect"}

        started: list[Any] = []

        async def send(message: Message) -> None:
            await self._send(request, started, message)

        try:
            await self._server.app(scope, receive, send)
        except OSError:
            if not self.closed:
                raise
            return  # the client went away while the app answered: nothing to tell anyone
        except Exception:
            log.exception("the app failed on %s %s", scope["method"], scope["path"])
            if not request.head:
                self._refuse(500, "internal error")
            else:
                self.close()
            return
        if not request.ended:
            if not request.head:
                log.error("the app returned no reply to %s %s", scope["method"], scope["path"])
                self._refuse(500, "internal error")
            else:
                self.close()  # a reply cut short: the client must not wait for the rest

    async def _send(self, request: _Request, started: list[Any], message: Message) -> None:
        transport = self._transport
        if self.closed or transport is None:
            raise ConnectionResetError("the client went away")
        kind = message["type"]
        if kind == "http.response.start":
            if started:
                raise RuntimeError("the reply already started")
            started.append(message)
            return
        if kind != "http.response.body" or request.ended or not started:
            raise RuntimeError(f"ASGI message {kind!r} out of order")
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if request.head:
            framed = _framed(request, body, more)
        else:  # the first body: one write with the status line and headers
            request.head = True
            framed = self._head(request, started[0], body, more)
        if framed:
            transport.write(framed)
        if not more:
            self._ended(request)
        elif self._drained is not None:
            await self._drained  # the client reads slower than the app writes

    def _head(self, request: _Request, start: Message, body: bytes, more: bool) -> bytes:
        """The status line and headers, with the first body chunk framed after them."""
        status: int = start["status"]
        lines = [_status_line(status), b"date: ", _Clock.date(), b"\r\n"]
        length = False
        for name, value in start.get("headers", ()):
            lowered = name.lower()
            if lowered == b"connection":
                request.keep_alive = request.keep_alive and value.lower() != b"close"
                continue
            length = length or lowered == b"content-length"
            lines += (name, b": ", value, b"\r\n")
        if status in _NO_BODY_STATUS or request.method == b"HEAD":
            request.bodiless = True
        elif not length and more:
            request.chunked = True
            lines.append(b"transfer-encoding: chunked\r\n")
        elif not length:
            lines.append(b"content-length: %d\r\n" % len(body))
        if not request.keep_alive or self.closing:
            request.keep_alive = False
            lines.append(b"connection: close\r\n")
        lines += (b"\r\n", _framed(request, body, more))
        return b"".join(lines)

    def _ended(self, request: _Request) -> None:
        request.ended = True
        if not request.client_gone.done():
            request.client_gone.set_result(False)  # the reply ended: it can no longer be cut
        if not request.keep_alive:
            self.close()

    # -- limits -----------------------------------------------------------------------------

    def _arm(self, seconds: float, then: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self._loop.call_later(seconds, then)
        self._header_armed = then == self._header_deadline

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._header_armed = False

    def _header_deadline(self) -> None:
        self._timer = None
        self._header_armed = False
        if self._serving is None:
            self._refuse(408, "the request headers did not arrive within the time limit")

    def _read_deadline(self) -> None:
        self._timer = None
        self.close()  # the body did not arrive in time: the app never saw this request

    def _refuse(
        self,
        status: int,
        message: str,
        body: Callable[[str], dict[str, Any]] = plain_error,
    ) -> None:
        """Answer ``status`` and end the connection: it is in no state to go on.

        The client may still be sending (a body over the limit): closing at once, with its
        bytes unread, would reset the connection and could destroy the answer before the
        client reads it. So the answer goes out, then our end of the stream, and what still
        comes in is discarded for ``LINGER_S`` at most (nginx's lingering close)."""
        transport = self._transport
        if transport is None or self.closed:
            return
        transport.write(_error_reply(status, body(message), close=True))
        self.closed = True  # nothing more is parsed or served on this connection
        self._disarm()
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = self._loop.call_later(LINGER_S, transport.close)

    def close(self) -> None:
        self._disarm()
        self.closed = True
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def shut(self) -> None:
        """Stop after the request in progress (at once when idle)."""
        self.closing = True
        if self._serving is None and not self._queue:
            self.close()

    @property
    def serving(self) -> asyncio.Task[None] | None:
        return self._serving


def _framed(request: _Request, body: bytes, more: bool) -> bytes:
    """``body`` as it goes on the wire: in a chunk when chunked (the last one when not
    ``more``), as is otherwise, nothing when the reply has no body."""
    if request.bodiless:
        return b""
    if not request.chunked:
        return body
    chunk = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
    return chunk if more else chunk + b"0\r\n\r\n"


def _unquote(raw: bytes) -> str:
    return unquote_to_bytes(raw).decode("latin-1")


class LeanServer(AsyncResource):
    """An ASGI app served on ``host:port`` (port 0 picks a free one), as an async context
    manager: the same face as :class:`~fleetwatch.lifecycle._app_server.AppServer`.

    ``refuse`` shapes the body of a 413 (the gateway answers in OpenAI's error format).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: tuple[str, str] | None = None,
        limits: HttpLimits | None = None,
        refuse: Callable[[str], dict[str, Any]] = plain_error,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.limits = limits or HttpLimits()
        self.max_body_bytes = self.limits.max_body_bytes
        self.refuse = refuse
        self.scheme = "https" if tls is not None else "http"
        self._tls = tls
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """``http(s)://host:port`` once started (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving; raises :class:`ServeError` naming the address when the
        port cannot be bound."""
        context = None
        if self._tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self._tls)
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _Connection(self), self.host, self.port, ssl=context, backlog=2048
            )
        except OSError as exc:
            raise ServeError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc} (choose "
                "another port, or stop what holds it)"
            ) from None
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        """Stop accepting, let requests in progress finish (``SHUTDOWN_GRACE_S`` at most,
        then they are cancelled) and close every connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for connection in list(self.connections):
            connection.shut()
        running = [c.serving for c in self.connections if c.serving is not None]
        if running:
            _, late = await asyncio.wait(running, timeout=SHUTDOWN_GRACE_S)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
        for connection in list(self.connections):
            connection.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await server.wait_closed()
