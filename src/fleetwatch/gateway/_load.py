"""The servers' own load figures, copied from the registry's load channel."""

from __future__ import annotations

import asyncio

from fleetwatch.discovery import RegistryClient
from fleetwatch.errors import RegistryError

Key = tuple[str, str]


class LoadFeed:
    """``figures`` holds what each instance (or its agent) last published; :meth:`run`
    refreshes it every ``every`` seconds until cancelled."""

    def __init__(self, registry: RegistryClient, service: str, every: float) -> None:
        self._registry = registry
        self.service = service
        self.every = every
        self.figures: dict[Key, dict[str, float]] = {}

    async def run(self) -> None:
        while True:
            try:
                reported = await self._registry.load(self.service)
            except RegistryError:
                pass  # keep the last figures; the router also counts its own requests
            else:
                self.figures.clear()
                self.figures.update(
                    ((self.service, instance_id), dict(load))
                    for instance_id, load in reported.items()
                )
            await asyncio.sleep(self.every)
