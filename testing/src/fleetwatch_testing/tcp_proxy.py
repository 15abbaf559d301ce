"""A userspace TCP proxy that can play a network partition, for chaos tests on loopback.

In front of a real server it forwards bytes both ways. :meth:`TcpProxy.cut` makes it behave as
a link that drops packets: open connections stop carrying data in either direction and new
connections are accepted but never forwarded, so the far side sees timeouts, never a refusal
or a reset (a refusal is an answer, which no partition gives). :meth:`TcpProxy.heal` closes
the stalled connections (as the peers' TCP timeouts would) and forwards again.
"""

from __future__ import annotations

import asyncio
import contextlib

from fleetwatch._async_resource import AsyncResource

_CHUNK = 64 * 1024


class TcpProxy(AsyncResource):
    """``127.0.0.1:port`` forwarding to ``target_host:target_port`` until cut."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def cut_off(self) -> bool:
        """Whether the proxy is dropping traffic."""
        return not self._open.is_set()

    def cut(self) -> None:
        """Drop all traffic from now on, on open and new connections alike."""
        self._open.clear()

    def heal(self) -> None:
        """Forward again; connections that were stalled are closed."""
        for writer in list(self._writers):
            writer.close()
        self._open.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._links):
            task.cancel()
        await asyncio.gather(*self._links, return_exceptions=True)
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        self._writers.add(writer)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            await self._open.wait()  # a new connection during a cut goes nowhere
            async with asyncio.timeout(5):
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            self._writers.add(upstream_writer)
            await asyncio.gather(
                self._pump(reader, upstream_writer), self._pump(upstream_reader, writer)
            )
        except (OSError, TimeoutError):
            pass  # the far end went away: so does this link
        finally:
            self._links.discard(task)
            for end in (writer, upstream_writer):
                if end is not None:
                    self._writers.discard(end)
                    end.close()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(_CHUNK):
            if not self._open.is_set():
                await self._open.wait()  # dropped: the bytes never arrive
                return
            sink.write(data)
            await sink.drain()
        with contextlib.suppress(OSError):
            sink.write_eof()
