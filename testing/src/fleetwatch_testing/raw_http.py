"""A minimal keep-alive HTTP/1.1 client over asyncio streams, for load generation.

General-purpose clients spend more CPU per request than the small servers they load, which
hides the server's latency behind the client's; this one parses only what a GET of a small
body needs (status line, ``Content-Length``) so one process can drive thousands of requests a
second. It is for tests and benchmarks against fleetwatch's own servers, not a general client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from fleetwatch._async_resource import AsyncResource


class RawHttpConnection(AsyncResource):
    """One persistent connection to ``host:port``; ``get()`` sends a request and reads the reply."""

    def __init__(self, host: str, port: int, *, timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        """Connect (``async with`` does it)."""
        await self.connect()

    async def connect(self) -> None:
        """Open the TCP connection (bounded by ``timeout``)."""
        async with asyncio.timeout(self.timeout):
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def get(self, path: str) -> tuple[int, bytes]:
        """GET ``path``; returns the status code and body."""
        return await self.request("GET", path)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """Send one request; returns the status code and body. Reconnects if needed.

        A reused connection the server closed while it sat idle (its keep-alive timeout) fails
        before any byte of the answer arrives; like browsers and urllib3, an idempotent request
        (GET, PUT, DELETE) is then sent once more on a new connection. Any other failure raises.
        """
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        if body or method in ("PUT", "POST"):
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        message = (head + "\r\n").encode() + body
        reused = self._writer is not None and not self._writer.is_closing()
        if not reused:
            await self.connect()
        try:
            return await self._exchange(message)
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
            partial = exc.partial if isinstance(exc, asyncio.IncompleteReadError) else b""
            if not reused or partial or method == "POST":
                raise
            await self.aclose()
            await self.connect()
            return await self._exchange(message)

    async def _exchange(self, message: bytes) -> tuple[int, bytes]:
        try:
            return await self._request(message)
        except BaseException:
            # A half-read answer would be taken for the next request's: never reuse this one.
            await self.aclose()
            raise

    async def _request(self, message: bytes) -> tuple[int, bytes]:
        assert self._reader is not None
        assert self._writer is not None
        async with asyncio.timeout(self.timeout):
            self._writer.write(message)
            head = await self._reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                lowered = name.strip().lower()
                if lowered == b"content-length":
                    length = int(value)
                elif lowered == b"connection" and value.strip().lower() == b"close":
                    close = True
            body = await self._reader.readexactly(length) if length else b""
        if close:
            await self.aclose()
        return status, body

    async def aclose(self) -> None:
        """Close the connection."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
