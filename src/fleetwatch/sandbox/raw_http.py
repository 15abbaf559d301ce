"""A minimal keep-alive HTTP/1.1 GET client over asyncio streams, for load generation.

General-purpose clients spend more CPU per request than the small servers they load, which
hides the server's latency behind the client's; this one parses only what a GET of a small
body needs (status line, ``Content-Length``) so one process can drive thousands of requests a
second. It is for tests and benchmarks against fleetwatch's own servers, not a general client.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


class RawHttpConnection:
    """One persistent connection to ``host:port``; ``get()`` sends a request and reads the reply."""

    def __init__(self, host: str, port: int, *, timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        """Open the TCP connection (bounded by ``timeout``)."""
        async with asyncio.timeout(self.timeout):
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def get(self, path: str) -> tuple[int, bytes]:
        """GET ``path``; returns the status code and body. Reconnects if needed.

        A reused connection the server closed while it sat idle (its keep-alive timeout) fails
        before any byte of the answer arrives; like browsers and urllib3, the GET is then sent
        once more on a new connection. Any other failure is raised.
        """
        reused = self._writer is not None and not self._writer.is_closing()
        if not reused:
            await self.connect()
        try:
            return await self._exchange(path)
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
            partial = exc.partial if isinstance(exc, asyncio.IncompleteReadError) else b""
            if not reused or partial:
                raise
            await self.aclose()
            await self.connect()
            return await self._exchange(path)

    async def _exchange(self, path: str) -> tuple[int, bytes]:
        try:
            return await self._request(path)
        except BaseException:
            # A half-read answer would be taken for the next request's: never reuse this one.
            await self.aclose()
            raise

    async def _request(self, path: str) -> tuple[int, bytes]:
        assert self._reader is not None
        assert self._writer is not None
        request = f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n"
        async with asyncio.timeout(self.timeout):
            self._writer.write(request.encode())
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

    async def __aenter__(self) -> RawHttpConnection:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
