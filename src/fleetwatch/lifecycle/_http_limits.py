"""Limits every fleetwatch HTTP server enforces: slow clients, header size, body size, connections.

uvicorn closes idle keep-alive connections, but a client that opens a connection and then sends
its request one byte every few seconds (slowloris) holds a connection and a parser forever: no
timer runs while a request is half-read. :func:`guarded_protocol` adds the two deadlines nginx
calls ``client_header_timeout`` and ``client_body_timeout``:

- the request line and headers must arrive within ``header_timeout`` of the connection opening
  (or of the first byte of the next request on a kept-alive connection); otherwise the client
  gets ``408 Request Timeout`` and the connection is closed;
- the whole request, body included, must arrive within ``read_timeout`` of its first byte;
  otherwise the connection is closed and the app sees the client disconnect.

:class:`BodySizeLimit` refuses bodies above a size with 413, whether declared or chunked, while
streaming (nothing is buffered). Headers are capped by h11's incomplete-event limit when they
arrive in pieces (400) and by :class:`HeaderSizeLimit` when they arrive at once (431), and
``max_connections`` caps concurrent connections (more get 503 from uvicorn) so a flood cannot
take all memory.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("fleetwatch.lifecycle")

_TIMEOUT_BODY = b'{"error": "the request headers did not arrive within the time limit"}'
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)
_TOO_LARGE_BODY = b'{"error": "the request headers are larger than the limit"}'
_HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_TOO_LARGE_BODY), _TOO_LARGE_BODY)
)
#: uvicorn's HTTP/1.1 parsers: h11 (pure Python, everywhere) or httptools (llhttp, in C; the
#: gateway's own server, :mod:`fleetwatch.http1`, parses with it too).
Parser = Literal["h11", "httptools"]


def default_parser() -> Parser:
    """httptools where it is installed (the ``gateway``, ``fast`` and ``all`` extras), else h11: a
    registry node answering hundreds of agents spends about a third less CPU per heartbeat
    with it (1.25 ms against 0.7 to 1.0 ms, memory store, measured here); every limit holds
    with either."""
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one HTTP server tolerates from a client (defaults suit every fleetwatch server)."""

    #: Seconds from connection (or from the first byte of the next request) to the end of headers.
    header_timeout: float = 10.0
    #: Seconds from a request's first byte to the end of its body.
    read_timeout: float = 60.0
    #: Largest request line plus headers, in bytes (h11 answers 400 above it).
    max_header_bytes: int = 16 * 1024
    #: Largest request body, in bytes (413 above it); None when the app enforces its own.
    max_body_bytes: int | None = 16 * 1024 * 1024
    #: Concurrent connections plus requests before new requests get 503.
    max_connections: int = 4096
    #: Seconds an idle kept-alive connection stays open.
    keep_alive: float = 5.0
    parser: Parser = field(default_factory=default_parser)

    def uvicorn_options(self) -> dict[str, Any]:
        """The part of these limits uvicorn enforces itself, as ``uvicorn.Config`` options."""
        return {
            "http": guarded_protocol(self),
            "h11_max_incomplete_event_size": self.max_header_bytes,
            "limit_concurrency": self.max_connections,
            "timeout_keep_alive": self.keep_alive,
        }


def guarded_protocol(limits: HttpLimits) -> type[asyncio.Protocol]:
    """uvicorn's protocol for ``limits.parser``, with the header and read deadlines of
    ``limits`` (and, for httptools, which has no cap of its own, the header size)."""
    base = _guarded_httptools() if limits.parser == "httptools" else _GuardedH11Protocol

    class Guarded(base):  # type: ignore[valid-type,misc]
        header_timeout = limits.header_timeout
        read_timeout = limits.read_timeout
        max_header_bytes = limits.max_header_bytes

    return Guarded


class _Deadlines:
    """The deadlines, over either of uvicorn's HTTP/1.1 protocols (``cycle``, ``loop``,
    ``transport`` and ``client`` are theirs)."""

    header_timeout: float
    read_timeout: float
    max_header_bytes: int
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    client: tuple[str, int] | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._started_at = 0.0
        self._reading: Any = None  # the cycle whose headers we have seen
        self._phase = "idle"  # idle → headers → body → idle

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._begin_request()

    def data_received(self, data: bytes) -> None:
        if self._phase == "idle" and (self.cycle is None or self.cycle.response_complete):
            self._begin_request()
        if self._phase == "headers":
            self._header_bytes += len(data)
        super().data_received(data)  # type: ignore[misc]
        self._follow_request()
        if self._phase == "headers" and self._header_bytes > self.max_header_bytes:
            self._refuse_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._follow_request()  # a pipelined request may have been parsed just now

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _refuse_headers(self) -> None:
        """Headers past the cap that are still not complete: 431, and the connection closes
        (h11 caps them itself with a 400; this is the same cap for parsers that have none)."""
        if not self.transport.is_closing():
            self.transport.write(_HEADERS_TOO_LARGE)
            self.transport.close()
        self._phase = "idle"
        self._disarm()

    def _begin_request(self) -> None:
        self._header_bytes = 0
        self._phase = "headers"
        self._started_at = self.loop.time()
        self._arm(self.header_timeout)

    def _follow_request(self) -> None:
        cycle = self.cycle
        if cycle is not None and cycle is not self._reading:
            self._reading = cycle  # a new request's headers are complete
            if cycle.more_body:
                self._phase = "body"
                elapsed = self.loop.time() - self._started_at
                self._arm(max(self.read_timeout - elapsed, 0.0))
            else:
                self._phase = "idle"
                self._disarm()
        elif self._phase == "body" and cycle is not None and not cycle.more_body:
            self._phase = "idle"
            self._disarm()

    def _arm(self, delay: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay, self._on_deadline)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _on_deadline(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        peer = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        if self._phase == "headers":
            logger.info("closing %s: headers not received within %gs", peer, self.header_timeout)
            self.transport.write(_REQUEST_TIMEOUT)
        else:
            logger.info("closing %s: request body not received within %gs", peer, self.read_timeout)
        self._phase = "idle"
        self.transport.close()


class _GuardedH11Protocol(_Deadlines, H11Protocol):  # type: ignore[misc]
    pass


def _guarded_httptools() -> type[_Deadlines]:
    # Imported only when asked for: httptools is an optional speed-up.
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: PLC0415

    class _GuardedHttpToolsProtocol(_Deadlines, HttpToolsProtocol):  # type: ignore[misc]
        pass

    return _GuardedHttpToolsProtocol


def plain_error(message: str) -> dict[str, Any]:
    """The error body fleetwatch's own APIs use: ``{"error": message}``."""
    return {"error": message}


class HeaderSizeLimit:
    """Refuse requests whose request line and headers exceed ``max_bytes`` with 431.

    h11 caps headers that arrive in pieces; headers that arrive in one read are measured here.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(name) + len(value) + 4 for name, value in scope.get("headers") or [])
            if size > self.max_bytes:
                message = f"request headers larger than {self.max_bytes} bytes"
                await send_error(send, 431, plain_error(message))
                return
        await self.app(scope, receive, send)


class BodySizeLimit:
    """Refuse request bodies above ``limit`` bytes with 413, declared or chunked, while streaming.

    A declared ``content-length`` above the limit is refused before the app runs. A chunked body
    is counted as the app reads it: once past the limit the app is told the client went away and
    the client gets 413, unless the app had already started its reply (then the connection is
    simply closed by the server when the app returns). ``error_body`` shapes the 413's body
    (the gateway answers in OpenAI's error format).
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        error_body: Callable[[str], dict[str, Any]] = plain_error,
    ) -> None:
        self.app = app
        self.limit = limit
        self.error_body = error_body

    async def _refuse(self, send: Send) -> None:
        await send_error(send, 413, self.error_body(f"request body larger than {self.limit} bytes"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received = 0
        too_large = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    too_large = True
                    if not started:
                        await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # the 413 went out instead
            started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not too_large:
                raise
            # The app failed on the body we cut short (413 already sent): expected, not an error.
            logger.debug("app stopped after an oversized body", exc_info=True)


async def send_too_large(send: Send, limit: int) -> None:
    """Answer 413 naming the limit."""
    await send_error(send, 413, plain_error(f"request body larger than {limit} bytes"))


async def send_error(send: Send, status: int, error: dict[str, Any]) -> None:
    """A whole JSON error reply."""
    body = json.dumps(error).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
