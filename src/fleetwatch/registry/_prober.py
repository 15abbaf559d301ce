"""Probing one instance over a connection the monitor keeps open.

The monitor holds one idle keep-alive connection to each instance between checks and watches
it: when the instance's process dies, the kernel closes its sockets and the monitor hears it at
once, so a crash is noticed in milliseconds instead of at the next check. A refused connection
is a definitive answer (nothing listens there); timeouts and 5xx are not, and go through the
``fall`` count, so a slow instance does not flap.

The connection is an asyncio Protocol rather than a stream: noticing the close costs nothing
between probes (no reader task per instance), which is what lets one monitor process check
thousands of instances a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from fleetwatch.errors import ConfigError
from fleetwatch.security._networks import AddressNotAllowed, NetworkPolicy
from fleetwatch.security._tls import shared_client_context

#: A health endpoint answers in a few bytes; more than this is refused (and not reused).
MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe's verdict."""

    passed: bool
    degraded: bool
    definitive: bool
    output: str
    latency_s: float


class _Response:
    """An HTTP/1.1 response parsed from a byte buffer, once complete."""

    __slots__ = ("close", "code")

    def __init__(self, code: int, close: bool) -> None:
        self.code = code
        self.close = close


def _parse(buffer: bytearray) -> tuple[_Response, int] | None:
    """A complete response at the start of ``buffer`` and its length, or None if incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_RESPONSE_BYTES:
            raise ValueError("response head too large")
        return None
    head = bytes(buffer[:end]).decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {lines[0][:80]!r}")
    length, chunked, close = 0, False, parts[0] == "HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip() or 0)
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    body_start = end + 4
    if chunked:
        terminator = buffer.find(b"0\r\n\r\n", body_start)
        if terminator < 0:
            if len(buffer) > MAX_RESPONSE_BYTES:
                raise ValueError(f"health response larger than {MAX_RESPONSE_BYTES} bytes")
            return None
        return _Response(int(parts[1]), close), terminator + 5
    if length > MAX_RESPONSE_BYTES:
        raise ValueError(f"health response larger than {MAX_RESPONSE_BYTES} bytes")
    if len(buffer) < body_start + length:
        return None
    return _Response(int(parts[1]), close), body_start + length


class _Connection(asyncio.Protocol):
    """One keep-alive connection: answers waiters, reports an idle close."""

    def __init__(self, on_idle_close: Callable[[], None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[_Response] | None = None
        self.closed = False
        self._on_idle_close = on_idle_close

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.abort()  # nobody asked: an idle connection must stay silent
            return
        self.buffer += data
        try:
            parsed = _parse(self.buffer)
        except ValueError as exc:
            waiter.set_exception(exc)
            self.abort()
            return
        if parsed is not None:
            response, size = parsed
            del self.buffer[:size]
            waiter.set_result(response)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("the connection closed mid-answer"))
        elif waiter is None or waiter.done():
            self._on_idle_close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


def _expire(waiter: asyncio.Future[_Response], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError(f"timed out after {timeout:g}s"))


class Prober:
    """Probes one instance, keeping its connection open and watched between probes.

    ``on_close`` is called (from the event loop) when the idle connection closes under us:
    the process may have died, so the monitor should probe again now.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        path: str | None = "/health",
        scheme: str = "http",
        on_close: Callable[[], None] | None = None,
        node: str = "",
        policy: NetworkPolicy | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        self.host = host
        self._policy = policy
        self.port = port
        self.path = path
        self._https = scheme == "https"
        self._ca_bundle = ca_bundle
        if self._https:
            shared_client_context(ca_bundle)  # a bundle that cannot be loaded fails here, now
        self._on_close = on_close or (lambda: None)
        self._conn: _Connection | None = None
        host_header = (f"[{host}]" if ":" in host else host) + f":{port}"
        node_header = f"X-Fleetwatch-Node: {node}\r\n" if node else ""
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: fleetwatch-monitor\r\n"
            f"Accept: */*\r\n{node_header}\r\n"
        ).encode()

    def _idle_closed(self) -> None:
        self._conn = None
        self._on_close()

    async def probe(self, timeout: float) -> ProbeResult:
        """One check within ``timeout`` seconds: an HTTP GET of ``path``, or (no path) a connect."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            if self._conn is None or self._conn.closed:
                self._conn = None
                conn = _Connection(self._idle_closed)
                target = self.host
                if self._policy is not None:
                    # Resolved and checked again now: a name may point elsewhere since it
                    # was registered (DNS rebinding). Connect to the checked address itself.
                    target = (await self._policy.resolve(self.host, self.port))[0]
                # Asked at every new connection: a rotated CA bundle is picked up.
                tls = shared_client_context(self._ca_bundle) if self._https else None
                # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a
                # cancellation that arrives as the connection is refused, and the watcher
                # would then outlive its monitor.
                async with asyncio.timeout(timeout):
                    await loop.create_connection(
                        lambda: conn,
                        target,
                        self.port,
                        ssl=tls,
                        server_hostname=self.host if tls else None,
                    )
                self._conn = conn
            if self.path is None:
                return self._verdict(200, started, "TCP connect")
            response = await self._exchange(loop, self._conn, timeout)
        except AddressNotAllowed as exc:
            self.close()
            return ProbeResult(
                False, False, False, f"refused by policy: {exc}", self._since(started)
            )
        except ConnectionRefusedError as exc:
            self.close()
            return ProbeResult(
                False, False, True, f"connection refused: {exc}", self._since(started)
            )
        except TimeoutError:
            self.close()
            return ProbeResult(
                False, False, False, f"timed out after {timeout:g}s", self._since(started)
            )
        except (OSError, ValueError, ConfigError) as exc:  # ConfigError: no CA bundle to load
            self.close()
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return ProbeResult(False, False, False, message, self._since(started))
        if response.close:
            self.close()
        return self._verdict(response.code, started, "HTTP")

    async def _exchange(
        self, loop: asyncio.AbstractEventLoop, conn: _Connection, timeout: float
    ) -> _Response:
        waiter: asyncio.Future[_Response] = loop.create_future()
        conn.waiter = waiter
        assert conn.transport is not None
        conn.transport.write(self._request)
        handle = loop.call_later(timeout, _expire, waiter, timeout)
        try:
            return await waiter
        finally:
            handle.cancel()
            conn.waiter = None

    @staticmethod
    def _since(started: float) -> float:
        return time.perf_counter() - started

    def _verdict(self, code: int, started: float, what: str) -> ProbeResult:
        latency = self._since(started)
        if 200 <= code < 300:
            return ProbeResult(
                True, False, False, f"{what} {code} in {latency * 1000:.1f}ms", latency
            )
        if code == 429:
            return ProbeResult(True, True, False, f"{what} 429: shedding load", latency)
        return ProbeResult(False, False, False, f"{what} {code}", latency)

    def close(self) -> None:
        """Drop the connection (the next probe opens a new one); no idle-close callback."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn._on_idle_close = lambda: None
            conn.abort()

    async def aclose(self) -> None:
        """Close (kept async for symmetry with other resources)."""
        self.close()
