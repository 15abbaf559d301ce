"""Misbehaving HTTP clients, to prove a server's limits end them on time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from fleetwatch.lifecycle._http_limits import HttpLimits

#: Limits tight enough for a test to hit each within seconds, on h11 (httptools has its own test).
TIGHT_LIMITS = HttpLimits(
    header_timeout=0.5,
    read_timeout=1.5,
    max_header_bytes=4096,
    max_body_bytes=1000,
    parser="h11",
)


async def read_until_closed(reader: asyncio.StreamReader, within: float) -> tuple[bytes, float]:
    """Everything a server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    async with asyncio.timeout(within):
        data = await reader.read()
    return data, time.monotonic() - started


@dataclass(frozen=True)
class SlowClients:
    """What a server answered three misbehaving clients (see :func:`probe_slow_clients`)."""

    #: Headers dribbled and never finished: the reply, and when the server closed.
    dribbled: bytes
    dribbled_closed_after: float
    #: Headers sent in pieces past the cap.
    oversized_headers: bytes
    #: A body that stops arriving: the reply (nothing), and when the server closed.
    stalled_body: bytes
    stalled_closed_after: float


async def probe_slow_clients(port: int) -> SlowClients:
    """An unfinished header, headers past 4 KiB in pieces, and a body that stops short, each
    on its own connection to ``port`` (limits as in :data:`TIGHT_LIMITS`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: a")
    dribbled, dribbled_after = await read_until_closed(reader, within=5)
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: ")
    with contextlib.suppress(ConnectionError):
        for _ in range(5):
            writer.write(b"z" * 1000)
            await writer.drain()
            await asyncio.sleep(0.05)
    oversized, _ = await read_until_closed(reader, within=5)
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    stalled, stalled_after = await read_until_closed(reader, within=5)
    writer.close()
    return SlowClients(dribbled, dribbled_after, oversized, stalled, stalled_after)
