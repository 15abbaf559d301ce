"""``tcp`` check: open a TCP connection to host:port."""

from __future__ import annotations

import asyncio
import contextlib
import time

from fleetwatch.health._result import Observation
from fleetwatch.health.checks._latency import timed_observation


class TcpCheck:
    """Connect to ``host:port`` and close again; slower than ``slow_after`` is degraded."""

    component_type = "tcp"
    measurement = "connectTime"

    def __init__(
        self, host: str, port: int, *, timeout: float = 5.0, slow_after: float | None = None
    ) -> None:
        self.host = host
        self.port = port
        self._timeout = timeout
        self._slow_after = slow_after

    async def check(self) -> Observation:
        started = time.perf_counter()
        async with asyncio.timeout(self._timeout):
            _, writer = await asyncio.open_connection(self.host, self.port)
        elapsed = time.perf_counter() - started
        writer.close()
        # The peer may reset a connection we only opened to prove it could be opened.
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        target = f"{self.host}:{self.port}"
        return timed_observation(f"TCP {target}", elapsed, self._slow_after, {"target": target})
