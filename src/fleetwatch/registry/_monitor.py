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
import hashlib
import logging
import random
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from fleetwatch._async_resource import AsyncResource
from fleetwatch.errors import IndexReset, RegistryUnavailable
from fleetwatch.registry._judge import judge
from fleetwatch.registry._model import (
    CHECKED_STATUSES,
    CheckType,
    EventType,
    Instance,
    InstanceStatus,
)
from fleetwatch.registry._preservation import PreservationPolicy, SelfPreservation
from fleetwatch.registry._prober import Prober, ProbeResult
from fleetwatch.registry._store import CheckRecord, RegistryStore, consistent_read
from fleetwatch.security._networks import NetworkPolicy

log = logging.getLogger("fleetwatch.registry")

Key = tuple[str, str]
#: After a failure that has not yet made an instance unavailable, the next probe comes this
#: soon instead of a whole interval later.
FAST_RECHECK_S = 0.1
#: ... and this soon when the failure followed the instance's connection closing.
CLOSE_RECHECK_S = 0.01
#: Registry nodes heartbeat this often and count as gone this long after their last beat.
NODE_BEAT_S = 1.0
NODE_TTL_S = 3.0


def _weight(node: str, name: str) -> int:
    digest = hashlib.blake2b(f"{node}|{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    """How the monitor and reaper behave. ``deregister_after`` is the seed's 10 minutes."""

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


class _Watcher:
    """Probes one instance until cancelled.

    The hot path (a passing probe with nothing to report) touches no store and allocates
    little: counters live here as plain integers, and the wait between probes is one future
    with one timer, which an idle-connection close resolves early.
    """

    def __init__(self, monitor: Monitor, instance: Instance, *, spread: bool = False) -> None:
        self.monitor = monitor
        self.instance = instance
        self.failures = instance.consecutive_failures
        self.successes = instance.consecutive_successes
        self._wake: asyncio.Future[None] | None = None
        self.prober = self._prober(instance)
        self.last_write = 0.0
        self.suspect = False
        self.after_close = False
        # Watchers started together (a node starting, a resync taking over a dead node's share)
        # spread their first probes over one interval instead of all probing at once.
        self.first_delay = random.uniform(0, instance.check.interval) if spread else 0.0
        self.task = asyncio.create_task(
            self._run(), name=f"fleetwatch.watch.{instance.service}/{instance.instance_id}"
        )

    @property
    def agent_only(self) -> bool:
        """An agent-held instance: probe its agent, leave the verdict to the agent's reports."""
        return self.instance.check.type is CheckType.TTL

    def _prober(self, instance: Instance) -> Prober:
        check = instance.check
        path = None if check.type is CheckType.TCP else check.path
        port, scheme = instance.port, instance.scheme
        if check.type is CheckType.TTL and check.agent_port is not None:
            path, port, scheme = check.agent_path, check.agent_port, check.agent_scheme
        return Prober(
            instance.host,
            port,
            path=path,
            scheme=scheme,
            ca_bundle=self.monitor.settings.ca_bundle,
            on_close=self._closed,
            node=self.monitor.node_id,
            policy=self.monitor.settings.policy,
        )

    def wake(self) -> None:
        """Probe now."""
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _closed(self) -> None:
        # The idle connection closed: the process may have died. Probe now, and if that probe
        # fails without a verdict (a dying process's socket resets before it refuses), again
        # almost at once.
        self.after_close = True
        self.wake()

    def refresh(self, latest: Instance) -> None:
        """A newer copy from the store (an operator's status, a re-registration)."""
        target_changed = (latest.host, latest.port, latest.scheme, latest.check) != (
            self.instance.host,
            self.instance.port,
            self.instance.scheme,
            self.instance.check,
        )
        if target_changed:
            self.prober.close()
            self.prober = self._prober(latest)
            self.wake()
        if latest.status is not self.instance.status or target_changed:
            self.instance = latest

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        jitter = self.monitor.settings.jitter
        try:
            if self.first_delay:
                await asyncio.sleep(self.first_delay)
            while True:
                started = loop.time()
                result = await self.prober.probe(self.instance.check.timeout)
                self.monitor.probes += 1
                try:
                    await self._apply(result)
                except RegistryUnavailable as exc:
                    log.warning("registry.monitor_write_failed %s: %s", self.instance.key, exc)
                except Exception:  # keep probing; the next result may be written
                    log.exception("registry.monitor_apply_error %s", self.instance.key)
                wait = self.instance.check.interval * (1 - random.uniform(0, jitter))
                if self.suspect:
                    # HAProxy's "fastinter": while a failure is unconfirmed, look again soon.
                    wait = min(wait, CLOSE_RECHECK_S if self.after_close else FAST_RECHECK_S)
                self.after_close = False
                if started + wait > loop.time():
                    self._wake = loop.create_future()
                    handle = loop.call_at(started + wait, self.wake)
                    try:
                        await self._wake
                    finally:
                        handle.cancel()
                        self._wake = None
        finally:
            self.prober.close()

    async def _apply(self, result: ProbeResult) -> None:
        monitor, instance = self.monitor, self.instance
        now = time.time()
        verdict = judge(instance, self.failures, self.successes, result, now)
        status = verdict.status
        if self.agent_only and (result.passed or status is not InstanceStatus.UNAVAILABLE):
            # The agent reports the instance's health; a reachable agent changes nothing here.
            status = instance.status
        self.suspect = not result.passed and status is not InstanceStatus.UNAVAILABLE
        maybe_ours = not result.passed and not result.definitive
        # Instances long unavailable do not count: a few dead hosts timing out for hours must
        # not keep self-preservation on and hold back the next genuine failures.
        monitor.preservation.observe(
            instance.key, failing=maybe_ours and instance.status is not InstanceStatus.UNAVAILABLE
        )
        if (
            status is InstanceStatus.UNAVAILABLE
            and instance.status is not InstanceStatus.UNAVAILABLE
            and maybe_ours
            and monitor.preservation.engaged
        ):
            status = instance.status  # hold: the failure may be ours (self-preservation)
        # Written at once: a status change, or a check that starts or stops failing (so the
        # API shows it); otherwise at least every write_every seconds, renewing the lease.
        changed = (
            status is not instance.status
            or (verdict.failures > 0) != (self.failures > 0)
            or (verdict.successes > 0) != (self.successes > 0)
        )
        self.failures, self.successes = verdict.failures, verdict.successes
        if not changed and time.monotonic() - self.last_write < monitor.settings.write_every:
            return
        output = f"agent: {result.output}" if self.agent_only else result.output
        record = CheckRecord(
            now, output, verdict.failures, verdict.successes, renews_lease=not self.agent_only
        )
        reason = output if status is not instance.status else ""
        # Checks move only the statuses they own; under an operator's status they still record
        # their results, on the condition that the operator's status is still the one we saw.
        guard = (
            CHECKED_STATUSES
            if instance.status in CHECKED_STATUSES
            else frozenset({instance.status})
        )
        written = await monitor.store.set_status(
            *instance.key, status, reason=reason, record=record, only_from=guard
        )
        self.last_write = time.monotonic()
        if written is None:  # an operator stepped in, or it was removed: read what is there
            latest = await monitor.store.get(*instance.key)
            if latest is not None:
                self.instance = latest
            return
        self.instance = written[0]
        if written[1] is not None:
            monitor.transitions += 1
            log.info(
                "registry.instance_status %s/%s: %s -> %s (%s)",
                *instance.key,
                instance.status.value,
                status.value,
                result.output,
            )


class Monitor(AsyncResource):
    """Watches the instances this node is responsible for, and reaps lapsed leases.

    Several nodes on one store split the fleet: each heartbeats its name into the store every
    ``NODE_BEAT_S`` and checks the instances that rendezvous hashing gives it among the live
    nodes, so every instance is checked by exactly one node. A node that stops heartbeating
    drops out after ``NODE_TTL_S`` and the others take its instances over at their next sync.
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
        self._lease_preserving = False
        self.node_id = node_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.nodes: list[str] = [self.node_id]
        self._watchers: dict[Key, _Watcher] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._spare: set[asyncio.Task[None]] = set()
        self._sync_lock = asyncio.Lock()
        self._lapse_evictions: deque[float] = deque()
        self.probes = 0
        self.transitions = 0
        self.evictions = 0
        self.lease_preservations = 0

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
        if len(self.nodes) <= 1:
            return True
        name = f"{instance.service}/{instance.instance_id}"
        return max(self.nodes, key=lambda node: _weight(node, name)) == self.node_id

    async def start(self) -> None:
        """Start the sync, reap and membership loops (``async with`` does it)."""
        self._tasks = [
            asyncio.create_task(self._sync_loop(), name="fleetwatch.monitor-sync"),
            asyncio.create_task(self._reap_loop(), name="fleetwatch.monitor-reap"),
            asyncio.create_task(self._membership_loop(), name="fleetwatch.monitor-nodes"),
        ]

    async def aclose(self) -> None:
        """Stop every watcher and loop, and close their connections."""
        tasks = self._tasks + [w.task for w in self._watchers.values()] + list(self._spare)
        self._tasks, self._watchers = [], {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(RegistryUnavailable):
            await self.store.node_leave(self.node_id)

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
            self._watchers[instance.key] = _Watcher(self, instance, spread=spread)
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
            except Exception:  # a bug must not stop the monitor for good: log, back off, resync
                log.exception("registry.monitor_sync_error")
                index = None
                await asyncio.sleep(1.0)

    async def _membership_loop(self) -> None:
        while True:
            try:
                nodes = await self.store.node_heartbeat(self.node_id, NODE_TTL_S)
                if nodes != self.nodes:
                    log.info("registry.nodes %s: %s", self.node_id, ", ".join(nodes))
                    self.nodes = nodes or [self.node_id]
                    await self.sync()
            except RegistryUnavailable as exc:
                log.warning("registry.node_heartbeat_failed: %s", exc)
            except Exception:  # a bug must not stop the membership loop for good
                log.exception("registry.node_heartbeat_error")
            await asyncio.sleep(NODE_BEAT_S)

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reap_every)
            try:
                await self.reap()
            except RegistryUnavailable as exc:
                log.warning("registry.reap_failed: %s", exc)
            except Exception:  # a bug must not stop the reaper for good
                log.exception("registry.reap_error")

    async def reap(self) -> None:
        """Evict lapsed leases (unless too many lapse together) and long-unavailable instances."""
        instances = await self.store.instances()
        # Maintenance is an operator's promise that the instance will be back: never evicted.
        held = {i.key for i in instances if i.status is InstanceStatus.MAINTENANCE}
        lapsed = [key for key in await self.store.lapsed() if key not in held]
        # Leases of a cut-off fleet lapse over a heartbeat period, not in one reaper tick: count
        # what was evicted for a lapse within the last window together with what lapses now.
        horizon = time.monotonic() - self.settings.lapse_window
        while self._lapse_evictions and self._lapse_evictions[0] < horizon:
            self._lapse_evictions.popleft()
        recent = len(self._lapse_evictions)
        if lapsed and self.settings.preservation.suspicious(
            len(lapsed) + recent, len(instances) + recent
        ):
            self.lease_preservations += 1
            reason = f"{len(lapsed)} of {len(instances)} leases lapsed together; not evicting"
            log.warning("registry.self_preservation: %s", reason)
            if not self._lease_preserving:
                self._lease_preserving = True
                await self.store.note(EventType.SELF_PRESERVATION_ENGAGED, reason)
        else:
            if self._lease_preserving:
                self._lease_preserving = False
                await self.store.note(EventType.SELF_PRESERVATION_RELEASED, "leases renewed")
            for service, instance_id in lapsed:
                if await self.store.evict_if_lapsed(service, instance_id, "lease lapsed"):
                    self.evictions += 1
                    self._lapse_evictions.append(time.monotonic())
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
