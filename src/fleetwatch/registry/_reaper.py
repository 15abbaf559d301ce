"""The reaper: evicts instances whose lease lapsed, and those unavailable for too long.

Lapsed leases are held back by the one self-preservation rule (:class:`LapsedLeases`, on
:class:`PreservationPolicy`): many lapsing together look like the registry's own trouble.
Maintenance is an operator's promise that the instance will be back: never evicted.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fleetwatch.registry._model import EventType, Instance, InstanceStatus
from fleetwatch.registry._preservation import LapsedLeases
from fleetwatch.registry._store import RegistryStore

if TYPE_CHECKING:
    from fleetwatch.registry._monitor import MonitorSettings

log = logging.getLogger("fleetwatch.registry")


class Reaper:
    """One node's reaper over ``store``."""

    def __init__(self, store: RegistryStore, settings: MonitorSettings) -> None:
        self.store = store
        self.settings = settings
        self.leases = LapsedLeases(settings.preservation, settings.lapse_window)
        self.evictions = 0

    async def reap(self) -> None:
        """Evict lapsed leases (unless too many lapse together) and long-unavailable instances."""
        instances = await self.store.instances()
        held = {i.key for i in instances if i.status is InstanceStatus.MAINTENANCE}
        lapsed = [key for key in await self.store.lapsed() if key not in held]
        if self.leases.hold(len(lapsed), len(instances)):
            reason = f"{len(lapsed)} of {len(instances)} leases lapsed together; not evicting"
            log.warning("registry.self_preservation: %s", reason)
            if not self.leases.engaged:
                self.leases.engaged = True
                await self.store.note(EventType.SELF_PRESERVATION_ENGAGED, reason)
        else:
            if self.leases.engaged:
                self.leases.engaged = False
                await self.store.note(EventType.SELF_PRESERVATION_RELEASED, "leases renewed")
            for service, instance_id in lapsed:
                if await self.store.evict_if_lapsed(service, instance_id, "lease lapsed"):
                    self.evictions += 1
                    self.leases.evicted()
        await self._evict_long_unavailable(instances)

    async def _evict_long_unavailable(self, instances: list[Instance]) -> None:
        now = await self.store.now()
        for instance in instances:
            if (
                instance.status is InstanceStatus.UNAVAILABLE
                and now - instance.status_since > self.settings.deregister_after
            ):
                latest = await self.store.get(*instance.key)  # it may have recovered since
                if latest is None or (latest.status, latest.status_since) != (
                    instance.status,
                    instance.status_since,
                ):
                    continue
                reason = f"unavailable for more than {self.settings.deregister_after:g}s"
                if await self.store.remove(*instance.key, evicted=True, reason=reason):
                    self.evictions += 1
