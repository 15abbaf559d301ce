"""The active monitor: checks every registered instance, reaps lapsed leases, evicts the dead.

One watcher task per instance probes it on its interval (with jitter), over a connection kept
open and watched between probes, so a crash is noticed in milliseconds. Each result goes through
:func:`~fleetwatch.registry._judge.judge`; status changes are written at once, bookkeeping at
least every ``write_every`` seconds (each write also renews the instance's lease: the monitor
vouches for it). Instances with a ``ttl`` check belong to their agent and are not probed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from fleetwatch._async_resource import AsyncResource
from fleetwatch._supervisor import Supervisor
from fleetwatch.errors import IndexReset, RegistryUnavailable
from fleetwatch.registry._membership import NODE_BEAT_S, Membership
from fleetwatch.registry._model import (
    CheckType,
    EventType,
    Instance,
)
from fleetwatch.registry._preservation import PreservationPolicy, SelfPreservation
from fleetwatch.registry._reaper import Reaper
from fleetwatch.registry._store import RegistryStore, consistent_read
from fleetwatch.registry._watcher import Watcher
from fleetwatch.security._networks import NetworkPolicy

log = logging.getLogger("fleetwatch.registry")

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    """How the monitor and reaper behave. ``deregister_after``: an instance unavailable for
    10 minutes is removed."""

    jitter: float = 0.1
    deregister_after: float = 600.0
    reap_every: float = 1.0
    write_every: float = 5.0
    resync_every: float = 5.0
    #: Lease lapses this close together count as lapsing together (self-preservation).
    lapse_window: float = 30.0
    preservation: PreservationPolicy = field(default_factory=PreservationPolicy)
    #: The SSRF guard: addresses are checked again at every new connection.
    policy: NetworkPolicy = field(default_factory=NetworkPolicy)
    #: CA bundle for instances and agents served over https (default: system CAs, or
    #: ``$FLEETWATCH_CA_BUNDLE``).
    ca_bundle: str | None = None


class Monitor(AsyncResource):
    """Watches the instances this node is responsible for, and reaps lapsed leases.

    It keeps one :class:`~fleetwatch.registry._watcher.Watcher` per instance this node owns
    (:class:`~fleetwatch.registry._membership.Membership` says which), in step with the store,
    and runs the :class:`~fleetwatch.registry._reaper.Reaper`.
    """

    def __init__(
        self,
        store: RegistryStore,
        settings: MonitorSettings | None = None,
        *,
        node_id: str | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or MonitorSettings()
        self.preservation = SelfPreservation(self.settings.preservation, self._announce)
        self.membership = Membership(store, node_id)
        self.reaper = Reaper(store, self.settings)
        self._watchers: dict[Key, Watcher] = {}
        #: The sync, reap and membership loops: each restarts after a crash (the next round
        #: redoes its work), counted and logged.
        self.loops = Supervisor("monitor")
        self._spare: set[asyncio.Task[None]] = set()
        self._sync_lock = asyncio.Lock()
        self.probes = 0
        self.transitions = 0

    @property
    def node_id(self) -> str:
        return self.membership.node_id

    @property
    def nodes(self) -> list[str]:
        """The live registry nodes sharing the fleet."""
        return self.membership.nodes

    @property
    def evictions(self) -> int:
        return self.reaper.evictions

    @property
    def lease_preservations(self) -> int:
        """Reaper ticks that held evictions back because many leases lapsed together."""
        return self.reaper.leases.holds

    @property
    def watched(self) -> int:
        """How many instances this node probes now."""
        return len(self._watchers)

    def watching(self) -> set[Key]:
        """The (service, instance_id) keys this node probes now."""
        return set(self._watchers)

    def _announce(self, engaged: bool, reason: str) -> None:
        """Put a self-preservation change in the change feed (from a synchronous callback)."""
        kind = (
            EventType.SELF_PRESERVATION_ENGAGED if engaged else EventType.SELF_PRESERVATION_RELEASED
        )

        async def note() -> None:
            with contextlib.suppress(RegistryUnavailable):
                await self.store.note(kind, reason)

        task = asyncio.create_task(note(), name="fleetwatch.monitor-notice")
        self._spare.add(task)
        task.add_done_callback(self._spare.discard)

    def owns(self, instance: Instance) -> bool:
        """Whether this node checks ``instance`` (highest random weight among live nodes)."""
        return self.membership.owns(instance)

    async def start(self) -> None:
        """Start the sync, reap and membership loops (``async with`` does it)."""
        # The sync loop resyncs within a second after a crash, as after a store error; the
        # membership heartbeat must not pause longer than a beat, or the other nodes would
        # take this node's instances over while it still probes them.
        self.loops.start("sync", self._sync_loop, max_backoff=1.0)
        self.loops.start("reap", self._reap_loop)
        self.loops.start("nodes", self._membership_loop, max_backoff=NODE_BEAT_S)

    async def aclose(self) -> None:
        """Stop every watcher and loop, and close their connections."""
        await self.loops.aclose()
        tasks = [w.task for w in self._watchers.values()] + list(self._spare)
        if self._watchers:
            log.info("task.cancelled monitor: %d instance watchers", len(self._watchers))
        self._watchers = {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(RegistryUnavailable):
            await self.membership.leave()

    async def sync(self) -> int:
        """Full resync: start watchers for new instances, stop them for removed ones, pass on
        changes. Returns the index the view is consistent with."""
        async with self._sync_lock:  # two interleaved syncs would start two watchers
            # Under churn the listing may hold changes after ``index``; following the events
            # after it replays them, which starting and refreshing watchers take in their stride.
            index, instances = await consistent_read(self.store, self.store.instances)
            current = {i.key: i for i in instances if self._checks(i)}
            for key in list(self._watchers):
                if key not in current:
                    self._stop(key)
            for instance in current.values():
                self._watch(instance, spread=True)
            self.preservation.watched(len(self._watchers))
            return index

    def _checks(self, instance: Instance) -> bool:
        held_by_agent = instance.check.type is CheckType.TTL
        return (not held_by_agent or instance.check.agent_port is not None) and self.owns(instance)

    def _watch(self, instance: Instance, *, spread: bool = False) -> None:
        existing = self._watchers.get(instance.key)
        # A watcher that died (a bug) is replaced at the next sync.
        if existing is None or existing.task.done():
            self._watchers[instance.key] = Watcher(self, instance, spread=spread)
        else:
            existing.refresh(instance)

    def _stop(self, key: Key) -> None:
        watcher = self._watchers.pop(key, None)
        if watcher is not None:
            watcher.task.cancel()
            self._spare.add(watcher.task)
            watcher.task.add_done_callback(self._spare.discard)
        self.preservation.forget(key)

    async def _follow(self, index: int) -> int:
        """Apply the events after ``index`` (cheap: no full read of the registry)."""
        async with self._sync_lock:
            for event in await self.store.events_after(index, limit=5000):
                if event.is_notice:
                    pass
                elif event.instance is not None and self._checks(event.instance):
                    self._watch(event.instance)
                elif event.instance is None or event.key in self._watchers:
                    self._stop(event.key)
                index = event.index
            self.preservation.watched(len(self._watchers))
            return index

    async def _sync_loop(self) -> None:
        # A full read at start, every resync_every without changes (ownership may have moved),
        # and whenever the history cannot bridge the gap; otherwise, only the new events.
        index: int | None = None
        while True:
            try:
                if index is None:
                    index = await self.sync()
                else:
                    index = await self._follow(index)
                if await self.store.wait_for_change(index, self.settings.resync_every) == index:
                    index = None
            except IndexReset as exc:
                log.warning("registry.monitor_resync: %s", exc)
                index = None
            except RegistryUnavailable as exc:
                log.warning("registry.monitor_sync_failed: %s", exc)
                index = None
                await asyncio.sleep(1.0)
            # Anything else is a bug: the supervisor logs it, counts it, and restarts the
            # loop after a backoff, with a full resync.

    async def _membership_loop(self) -> None:
        while True:
            try:
                if await self.membership.beat():
                    await self.sync()
            except RegistryUnavailable as exc:
                log.warning("registry.node_heartbeat_failed: %s", exc)
            # Anything else is a bug: the supervisor logs it, counts it and restarts the loop.
            await asyncio.sleep(NODE_BEAT_S)

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reap_every)
            try:
                await self.reap()
            except RegistryUnavailable as exc:
                log.warning("registry.reap_failed: %s", exc)
            # Anything else is a bug: the supervisor logs it, counts it and restarts the loop.

    async def reap(self) -> None:
        """Evict lapsed leases (unless too many lapse together) and long-unavailable instances."""
        await self.reaper.reap()

    def snapshot(self) -> dict[str, object]:
        """Counters and self-preservation state, for the API."""
        return {
            "node": self.node_id,
            "nodes": self.nodes,
            "watched": self.watched,
            "probes": self.probes,
            "transitions": self.transitions,
            "evictions": self.evictions,
            "lease_preservations": self.lease_preservations,
            "self_preservation": self.preservation.snapshot(),
        }
