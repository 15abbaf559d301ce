"""The embedded store: everything in this process, no dependencies. For one machine."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping

from fleetwatch._change_index import ChangeIndex
from fleetwatch.errors import Forbidden, IndexReset, InstanceGone
from fleetwatch.registry._model import NOTICE_KEY, Event, EventType, Instance, InstanceStatus
from fleetwatch.registry._store import DEFAULT_HISTORY, CheckRecord, recent_keys

Key = tuple[str, str]


class MemoryStore:
    """Instances, leases, tombstones and the event history in dictionaries.

    Leases run on this process's monotonic clock; timestamps are wall-clock seconds.
    """

    def __init__(self, *, history: int = DEFAULT_HISTORY) -> None:
        self._instances: dict[Key, Instance] = {}
        # Per service too: discovering a service must not sort the whole fleet.
        self._by_service: dict[str, dict[str, Instance]] = {}
        self._leases: dict[Key, float] = {}
        self._tombstones: dict[Key, float] = {}
        self._events: deque[Event] = deque(maxlen=history)
        self._changes = ChangeIndex()
        self._loads: dict[Key, dict[str, float]] = {}
        self._sli: dict[str, dict[int, dict[str, float]]] = {}
        self._nodes: dict[str, float] = {}

    async def now(self) -> float:
        return time.time()

    async def index(self) -> int:
        return self._changes.value

    def _emit(
        self,
        kind: EventType,
        key: Key,
        instance: Instance | None,
        previous: InstanceStatus | None = None,
        reason: str = "",
    ) -> Event:
        index = self._changes.bump()
        event = Event(index, kind, key[0], key[1], time.time(), instance, previous, reason)
        self._events.append(event)
        return event

    def _check_tombstone(self, key: Key) -> None:
        until = self._tombstones.get(key)
        if until is None:
            return
        if until > time.monotonic():
            raise InstanceGone(
                f"{key[0]}/{key[1]} was deregistered by an operator; it may register again in "
                f"{until - time.monotonic():.0f}s",
                service=key[0],
                instance_id=key[1],
            )
        del self._tombstones[key]

    async def upsert(self, instance: Instance, *, guard_owner: bool = False) -> Event:
        key = instance.key
        self._check_tombstone(key)
        previous = self._instances.get(key)
        if guard_owner and previous is not None and previous.owner != instance.owner:
            raise _taken(key, previous.owner)
        existed = previous is not None
        if instance.status_since == 0.0:
            instance = instance.with_changes(status_since=time.time())
        self._put(instance)
        self._leases[key] = time.monotonic() + instance.ttl
        return self._emit(EventType.UPDATED if existed else EventType.REGISTERED, key, instance)

    def _put(self, instance: Instance) -> None:
        self._instances[instance.key] = instance
        self._by_service.setdefault(instance.service, {})[instance.instance_id] = instance

    async def renew(self, service: str, instance_id: str) -> Instance | None:
        key = (service, instance_id)
        self._check_tombstone(key)
        instance = self._instances.get(key)
        if instance is not None:
            self._leases[key] = time.monotonic() + instance.ttl
        return instance

    async def set_status(
        self,
        service: str,
        instance_id: str,
        status: InstanceStatus,
        *,
        reason: str = "",
        record: CheckRecord | None = None,
        only_from: frozenset[InstanceStatus] | None = None,
    ) -> tuple[Instance, Event | None] | None:
        key = (service, instance_id)
        current = self._instances.get(key)
        if current is None or (only_from is not None and current.status not in only_from):
            return None
        changes: dict[str, object] = {"status": status}
        if status is not current.status:
            changes["status_since"] = time.time()
        if record is not None:
            if record.renews_lease:
                # A check of the instance is the checker vouching for it: the lease runs on.
                self._leases[key] = time.monotonic() + current.ttl
            changes.update(
                last_check_at=record.at,
                last_check_output=record.output,
                consecutive_failures=record.consecutive_failures,
                consecutive_successes=record.consecutive_successes,
            )
        updated = current.with_changes(**changes)
        self._put(updated)
        if status is current.status:
            return updated, None
        return updated, self._emit(EventType.STATUS_CHANGED, key, updated, current.status, reason)

    async def remove(
        self,
        service: str,
        instance_id: str,
        *,
        evicted: bool = False,
        reason: str = "",
        tombstone_for: float = 0.0,
    ) -> Event | None:
        key = (service, instance_id)
        if tombstone_for > 0:
            self._tombstones[key] = time.monotonic() + tombstone_for
        removed = self._instances.pop(key, None)
        members = self._by_service.get(service)
        if members is not None:
            members.pop(instance_id, None)
            if not members:
                del self._by_service[service]
        self._leases.pop(key, None)
        self._loads.pop(key, None)
        if removed is None:
            return None
        kind = EventType.EVICTED if evicted else EventType.DEREGISTERED
        return self._emit(kind, key, None, removed.status, reason)

    async def lapsed(self) -> list[tuple[str, str]]:
        now = time.monotonic()
        return sorted(key for key, deadline in self._leases.items() if deadline <= now)

    async def evict_if_lapsed(self, service: str, instance_id: str, reason: str) -> Event | None:
        deadline = self._leases.get((service, instance_id))
        if deadline is None or deadline > time.monotonic():
            return None
        return await self.remove(service, instance_id, evicted=True, reason=reason)

    async def get(self, service: str, instance_id: str) -> Instance | None:
        return self._instances.get((service, instance_id))

    async def instances(self, service: str | None = None) -> list[Instance]:
        if service is None:
            return [instance for _, instance in sorted(self._instances.items())]
        members = self._by_service.get(service, {})
        return [members[instance_id] for instance_id in sorted(members)]

    async def events_after(self, index: int, limit: int = 1000) -> list[Event]:
        if index > self._changes.value:
            raise IndexReset(
                f"index {index} is ahead of the registry's {self._changes.value}: it restarted; "
                "fetch the full state again"
            )
        oldest = self._events[0].index if self._events else self._changes.value + 1
        if index + 1 < oldest:
            raise IndexReset(
                f"events after {index} are no longer kept (oldest is {oldest}); "
                "fetch the full state again"
            )
        return [event for event in self._events if event.index > index][:limit]

    async def wait_for_change(self, index: int, within: float) -> int:
        return await self._changes.wait_past(index, within)

    def changed_keys(self, after: int, upto: int) -> set[tuple[str, str]] | None:
        return recent_keys(((e.index, e.key) for e in reversed(self._events)), after, upto)

    async def put_load(self, service: str, instance_id: str, load: Mapping[str, float]) -> None:
        if (service, instance_id) in self._instances:
            self._loads[(service, instance_id)] = dict(load)

    async def add_sli(self, service: str, minute: int, counts: Mapping[str, float]) -> None:
        bucket = self._sli.setdefault(service, {}).setdefault(minute, {})
        for name, value in counts.items():
            bucket[name] = bucket.get(name, 0.0) + value

    async def sli_minutes(self, service: str, since: int) -> dict[int, dict[str, float]]:
        return {m: dict(b) for m, b in self._sli.get(service, {}).items() if m >= since}

    async def trim_sli(self, service: str, before: int) -> None:
        buckets = self._sli.get(service, {})
        for minute in [m for m in buckets if m < before]:
            del buckets[minute]

    async def loads(self, service: str) -> dict[str, dict[str, float]]:
        return {key[1]: dict(load) for key, load in self._loads.items() if key[0] == service}

    async def note(self, kind: EventType, reason: str) -> Event:
        return self._emit(kind, NOTICE_KEY, None, None, reason)

    async def node_heartbeat(self, node_id: str, ttl: float) -> list[str]:
        now = time.monotonic()
        self._nodes[node_id] = now + ttl
        self._nodes = {n: d for n, d in self._nodes.items() if d > now}
        return sorted(self._nodes)

    async def node_leave(self, node_id: str) -> None:
        self._nodes.pop(node_id, None)

    async def aclose(self) -> None:
        return None


def _taken(key: Key, owner: str) -> Forbidden:
    return Forbidden(
        f"{key[0]}/{key[1]} is registered by another token ({owner!r}); only that token or an "
        "admin token may change it"
    )
