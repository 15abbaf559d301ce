"""Probing one instance over a connection the monitor keeps open.

The monitor holds one idle keep-alive connection to each instance between checks and watches
it: when the instance's process dies, the kernel closes its sockets and the monitor hears it at
once, so a crash is noticed in milliseconds instead of at the next check. A refused connection
is a definitive answer (nothing listens there); timeouts and 5xx are not, and go through the
``fall`` count, so a slow instance does not flap.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

#: A health endpoint answers in a few bytes; more than this is not read (nor reused).
MAX_BODY_BYTES = 64 * 1024
_REFUSED = (ConnectionRefusedError,)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe's verdict."""

    passed: bool
    degraded: bool
    definitive: bool
    output: str
    latency_s: float


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
    ) -> None:
        self.host = host
        self.port = port
        self.path = path
        self._tls = ssl.create_default_context() if scheme == "https" else None
        self._on_close = on_close
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._watch: asyncio.Task[None] | None = None
        host_header = (f"[{host}]" if ":" in host else host) + f":{port}"
        node_header = f"X-Fleetwatch-Node: {node}\r\n" if node else ""
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: fleetwatch-monitor\r\n"
            f"Accept: */*\r\n{node_header}\r\n"
        ).encode()

    async def probe(self, timeout: float) -> ProbeResult:
        """One check within ``timeout`` seconds: an HTTP GET of ``path``, or (no path) a connect."""
        await self._stop_watching()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                if self._writer is None:
                    await self._connect()
                if self.path is None:
                    result = self._verdict(200, started, "TCP connect")
                else:
                    result = await self._get(started)
        except _REFUSED as exc:
            await self.close()
            return ProbeResult(
                False, False, True, f"connection refused: {exc}", self._since(started)
            )
        except TimeoutError:
            await self.close()
            return ProbeResult(
                False, False, False, f"timed out after {timeout:g}s", self._since(started)
            )
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            await self.close()
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return ProbeResult(False, False, False, message, self._since(started))
        if self._writer is not None:
            self._watch = asyncio.create_task(self._watch_idle(), name="fleetwatch.probe-watch")
        return result

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

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, ssl=self._tls
        )

    async def _get(self, started: float) -> ProbeResult:
        assert self._reader is not None
        assert self._writer is not None
        self._writer.write(self._request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP response: {lines[0][:80]!r}")
        code = int(parts[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        await self._skip_body(headers)
        if headers.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0":
            await self.close()
        return self._verdict(code, started, "HTTP")

    async def _skip_body(self, headers: dict[str, str]) -> None:
        assert self._reader is not None
        if "chunked" in headers.get("transfer-encoding", "").lower():
            total = 0
            while True:
                size_line = await self._reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                total += size
                if total > MAX_BODY_BYTES:
                    raise ValueError(f"health body larger than {MAX_BODY_BYTES} bytes")
                await self._reader.readexactly(size + 2)
                if size == 0:
                    return
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError(f"health body larger than {MAX_BODY_BYTES} bytes")
        if length:
            await self._reader.readexactly(length)

    async def _watch_idle(self) -> None:
        """Wait on the idle connection; EOF or data means it is gone (or broken): close it."""
        reader = self._reader
        if reader is None:
            return
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.read(1)
        self._watch = None
        await self.close()
        if self._on_close is not None:
            self._on_close()

    async def _stop_watching(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None and watch is not asyncio.current_task():
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch

    async def close(self) -> None:
        """Close the connection (the next probe opens a new one)."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def aclose(self) -> None:
        """Stop watching and close."""
        await self._stop_watching()
        await self.close()
