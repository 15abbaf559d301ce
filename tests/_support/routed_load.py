"""A routed load generator: what a client of the registry sees while a test breaks things."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from fleetwatch._async_resource import AsyncResource
from fleetwatch.discovery import DiscoveryClient


class RoutedLoad(AsyncResource):
    """Workers that each pick an instance through discovery and call it, counting outcomes:
    what a client of the registry experiences while the test breaks things."""

    def __init__(self, client: DiscoveryClient, service: str, *, workers: int = 4) -> None:
        self.client = client
        self.service = service
        self.workers = workers
        self.outcomes: Counter[str] = Counter()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def ok(self) -> int:
        return self.outcomes["ok"]

    @property
    def failed(self) -> int:
        """Requests that reached an instance and did not get a 200."""
        return self.outcomes["failed"]

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"chaos.load.{n}") for n in range(self.workers)
        ]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _work(self) -> None:
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                instance = await self.client.get_instance(self.service)
                if instance is None:
                    self.outcomes["no_instance"] += 1
                else:
                    try:
                        reply = await http.get(f"http://{instance.host}:{instance.port}/")
                        self.outcomes["ok" if reply.status_code == 200 else "failed"] += 1
                    except httpx.HTTPError:
                        self.outcomes["failed"] += 1
                await asyncio.sleep(0.01)
