"""The Redis store: many fleetwatch nodes share one Redis.

Every change runs as one Lua script (see ``_redis_scripts``): the instance, its lease in a
sorted set of deadlines on Redis's clock, its service's index set, the change index and the
event stream move together, and a lapsed lease is reaped with every entry that points at it.
Nothing relies on key expiry notifications (lossy and late) and nothing uses ``KEYS``.

Keys, all under one hash tag ``{NS}`` so the scripts run on Redis Cluster too:

- ``{NS}:inst`` hash ``service/id`` -> instance JSON; ``{NS}:lease`` zset of lease deadlines (ms);
- ``{NS}:tomb`` zset of tombstone expiries; ``{NS}:svc:<service>`` set of instance ids;
- ``{NS}:services`` set of services; ``{NS}:index`` the change index;
- ``{NS}:events`` stream, entry id ``<index>-1``; ``{NS}:load`` hash of load figures;
- ``{NS}:nodes`` zset of registry nodes and their liveness deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from fleetwatch._cancellation import keep_cancellation
from fleetwatch._extras import missing_extra
from fleetwatch.errors import Forbidden, IndexReset, InstanceGone
from fleetwatch.registry._model import NOTICE_KEY, Event, EventType, Instance, InstanceStatus
from fleetwatch.registry._store import DEFAULT_HISTORY, CheckRecord, recent_keys
from fleetwatch.registry.stores import _redis_scripts as scripts
from fleetwatch.registry.stores._redis_connect import SENTINEL_SCHEME, client_factory, translated

try:
    from redis.exceptions import RedisError
except ImportError as error:
    raise missing_extra("redis", "the Redis store (--store redis://...)") from error

log = logging.getLogger("fleetwatch.registry")

#: Every Redis command is bounded; a registry that hangs on its store helps nobody.
COMMAND_TIMEOUT_S = 5.0
#: How long a write waits for replicas to acknowledge it (Sentinel set-ups).
REPLICATION_WAIT_MS = 500
#: The longest a stopping change follower may take to close its connection.
FOLLOWER_STOP_S = 2.0
#: The change follower blocks this long per XREAD before looping.
FOLLOW_BLOCK_MS = 5_000
#: The changes the follower remembers by key, for blocking queries to skip (see changed_keys).
RECENT_KEYS = 10_000
#: How long an index read from Redis vouches for the follower's position (a Redis that lost
#: its data is noticed by the first wait after that).
INDEX_TRUST_S = 1.0


def _field(service: str, instance_id: str) -> str:
    return f"{service}/{instance_id}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry_index(entry_id: Any) -> int:
    """The change index of an event stream entry (its id is ``<index>-1``)."""
    return int(_text(entry_id).split("-", 1)[0])


class RedisStore:
    """A :class:`~fleetwatch.registry._store.RegistryStore` on Redis."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "fleetwatch",
        history: int = DEFAULT_HISTORY,
        wait_replicas: int | None = None,
    ) -> None:
        self._connect = client_factory(url)
        self._client = self._connect.client(COMMAND_TIMEOUT_S)
        self._url = url
        self._history = history
        # Through Sentinel, a write counts once a replica has it too (WAIT): a failover right
        # after must not lose a registration. Redis replication is otherwise asynchronous.
        if wait_replicas is None:
            wait_replicas = 1 if url.startswith(f"{SENTINEL_SCHEME}://") else 0
        self._wait_replicas = wait_replicas
        tag = "{" + namespace + "}"
        self._k = {
            name: f"{tag}:{name}"
            for name in ("inst", "lease", "tomb", "index", "events", "services", "load", "nodes")
        }
        self._tag = tag
        self._scripts = {
            name: self._client.register_script(source)
            for name, source in (
                ("upsert", scripts.UPSERT),
                ("renew", scripts.RENEW),
                ("set_status", scripts.SET_STATUS),
                ("remove", scripts.REMOVE),
                ("lapsed", scripts.LAPSED),
                ("put_load", scripts.PUT_LOAD),
                ("node_heartbeat", scripts.NODE_HEARTBEAT),
                ("note", scripts.NOTE),
                ("orphans", scripts.ORPHANS),
            )
        }
        self._latest = 0
        self._changed = asyncio.Event()
        #: (index, key) of the changes the follower has read, newest last: what lets blocking
        #: queries skip changes that cannot touch their answer without reading Redis each.
        self._recent: deque[tuple[int, tuple[str, str]]] = deque(maxlen=RECENT_KEYS)
        #: When the index was last read from Redis (monotonic): within INDEX_TRUST_S, a wait
        #: trusts the follower's position instead of reading it again.
        self._index_read_at = -INDEX_TRUST_S
        self._follower: asyncio.Task[None] | None = None

    def _svc(self, service: str) -> str:
        return f"{self._tag}:svc:{service}"

    async def now(self) -> float:
        async with translated("TIME"):
            seconds, micros = await self._client.time()
        return float(seconds) + float(micros) / 1e6

    async def index(self) -> int:
        async with translated("GET index"):
            value = int(await self._client.get(self._k["index"]) or 0)
        # Behind the follower: Redis lost its data, and the follower's position vouches for
        # nothing until a wait has started it over.
        self._index_read_at = time.monotonic() if value >= self._latest else -INDEX_TRUST_S
        return value

    async def upsert(self, instance: Instance, *, guard_owner: bool = False) -> Event:
        k = self._k
        field = _field(*instance.key)
        payload = json.dumps(instance.to_dict())
        async with translated(f"register {field}"):
            reply = await self._scripts["upsert"](
                keys=[k["inst"], k["lease"], k["tomb"], k["index"], k["events"],
                      self._svc(instance.service), k["services"]],
                args=[field, payload, self._history, instance.service, instance.instance_id,
                      "1" if guard_owner else "0"],
            )  # fmt: skip
            await self._replicated()
        if reply[0] == "gone":
            raise _gone(field, int(reply[1]))
        if reply[0] == "taken":
            raise Forbidden(
                f"{field} is registered by another token ({reply[1]!r}); only that token or an "
                "admin token may change it",
                service=instance.service,
                instance_id=instance.instance_id,
            )
        stored = Instance.from_dict(json.loads(reply[4]))
        return Event(
            int(reply[1]), EventType(reply[2]), *instance.key, int(reply[3]) / 1000, stored
        )

    async def _replicated(self) -> None:
        """With ``wait_replicas``, wait (up to 500 ms) until that many replicas have the write.

        A write no replica confirmed in time is logged: it stands on the primary alone, and a
        failover right now could lose it.
        """
        if self._wait_replicas:
            acknowledged = int(await self._client.wait(self._wait_replicas, REPLICATION_WAIT_MS))
            if acknowledged < self._wait_replicas:
                log.warning(
                    "registry.write_not_replicated: %d of %d replicas acknowledged in %d ms",
                    acknowledged,
                    self._wait_replicas,
                    REPLICATION_WAIT_MS,
                )

    async def renew(self, service: str, instance_id: str) -> Instance | None:
        field = _field(service, instance_id)
        async with translated(f"heartbeat {field}"):
            reply = await self._scripts["renew"](
                keys=[self._k["inst"], self._k["lease"], self._k["tomb"]], args=[field]
            )
        if reply[0] == "gone":
            raise _gone(field, int(reply[1]))
        return Instance.from_dict(json.loads(reply[1])) if reply[0] == "ok" else None

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
        field = _field(service, instance_id)
        record_json = ""
        if record is not None:
            record_json = json.dumps(
                {
                    "last_check_at": record.at,
                    "last_check_output": record.output,
                    "consecutive_failures": record.consecutive_failures,
                    "consecutive_successes": record.consecutive_successes,
                }
            )
        allowed = ",".join(sorted(s.value for s in only_from)) if only_from else ""
        async with translated(f"set status of {field}"):
            reply = await self._scripts["set_status"](
                keys=[self._k["inst"], self._k["index"], self._k["events"], self._k["lease"]],
                args=[
                    field,
                    status.value,
                    reason,
                    record_json,
                    allowed,
                    self._history,
                    "1" if record is not None and record.renews_lease else "0",
                ],
            )
            if reply[0] == "ok" and reply[2] != "0":  # bookkeeping alone need not wait
                await self._replicated()
        if reply[0] != "ok":
            return None
        instance = Instance.from_dict(json.loads(reply[1]))
        if reply[2] == "0":
            return instance, None
        event = Event(
            int(reply[2]),
            EventType.STATUS_CHANGED,
            service,
            instance_id,
            int(reply[3]) / 1000,
            instance,
            InstanceStatus(reply[4]),
            reason,
        )
        return instance, event

    async def _remove(
        self,
        service: str,
        instance_id: str,
        *,
        kind: EventType,
        reason: str,
        tombstone_for: float,
        only_if_lapsed: bool,
    ) -> Event | None:
        k = self._k
        field = _field(service, instance_id)
        async with translated(f"remove {field}"):
            reply = await self._scripts["remove"](
                keys=[k["inst"], k["lease"], k["tomb"], k["index"], k["events"],
                      self._svc(service), k["services"], k["load"]],
                args=[field, instance_id, service, kind.value, reason,
                      int(tombstone_for * 1000), self._history, "1" if only_if_lapsed else "0"],
            )  # fmt: skip
            await self._replicated()
        if reply[0] != "ok":
            return None
        previous = InstanceStatus(reply[2]) if reply[2] else None
        return Event(
            int(reply[1]), kind, service, instance_id, int(reply[3]) / 1000, None, previous, reason
        )

    async def remove(
        self,
        service: str,
        instance_id: str,
        *,
        evicted: bool = False,
        reason: str = "",
        tombstone_for: float = 0.0,
    ) -> Event | None:
        kind = EventType.EVICTED if evicted else EventType.DEREGISTERED
        return await self._remove(
            service,
            instance_id,
            kind=kind,
            reason=reason,
            tombstone_for=tombstone_for,
            only_if_lapsed=False,
        )

    async def lapsed(self) -> list[tuple[str, str]]:
        async with translated("find lapsed leases"):
            fields = await self._scripts["lapsed"](keys=[self._k["lease"]], args=[10_000])
        pairs = [_text(f).split("/", 1) for f in fields]
        return [(p[0], p[1]) for p in pairs if len(p) == 2]

    async def evict_if_lapsed(self, service: str, instance_id: str, reason: str) -> Event | None:
        return await self._remove(
            service,
            instance_id,
            kind=EventType.EVICTED,
            reason=reason,
            tombstone_for=0.0,
            only_if_lapsed=True,
        )

    async def get(self, service: str, instance_id: str) -> Instance | None:
        async with translated("HGET instance"):
            raw = await self._client.hget(self._k["inst"], _field(service, instance_id))
        return Instance.from_dict(json.loads(raw)) if raw else None

    async def instances(self, service: str | None = None) -> list[Instance]:
        async with translated("read instances"):
            if service is not None:
                ids = sorted(_text(i) for i in await self._client.smembers(self._svc(service)))
                if not ids:
                    return []
                fields = [_field(service, i) for i in ids]
                raws = await self._client.hmget(self._k["inst"], fields)
            else:
                raws = [
                    raw async for _, raw in self._client.hscan_iter(self._k["inst"], count=1000)
                ]
        found = [Instance.from_dict(json.loads(raw)) for raw in raws if raw]
        return sorted(found, key=lambda i: i.key)

    async def events_after(self, index: int, limit: int = 1000) -> list[Event]:
        async with translated("read events"):
            current = await self.index()
            if index > current:
                raise IndexReset(
                    f"index {index} is ahead of the registry's {current}: Redis lost its data "
                    "(restarted without persistence?); fetch the full state again"
                )
            if index == current:
                return []
            entries: Any = await self._client.xrange(
                self._k["events"], min=f"({index}-1", max="+", count=limit
            )
        events = [self._event(entry_id, values) for entry_id, values in entries]
        if not events or events[0].index > index + 1:
            oldest = events[0].index if events else current
            raise IndexReset(
                f"events after {index} are no longer kept (oldest is {oldest}); "
                "fetch the full state again"
            )
        return events

    @staticmethod
    def _event(entry_id: str, values: Mapping[str, str]) -> Event:
        index = _entry_index(entry_id)
        service, instance_id = values["field"].split("/", 1)
        raw = values.get("instance") or ""
        prev = values.get("prev") or ""
        return Event(
            index=index,
            type=EventType(values["type"]),
            service=service,
            instance_id=instance_id,
            at=int(values["at"]) / 1000,
            instance=Instance.from_dict(json.loads(raw)) if raw else None,
            previous_status=InstanceStatus(prev) if prev else None,
            reason=values.get("reason", ""),
        )

    async def wait_for_change(self, index: int, within: float) -> int:
        following = self._follower is not None and not self._follower.done()
        trusted = time.monotonic() - self._index_read_at < INDEX_TRUST_S
        if following and trusted and index <= self._latest:
            # The follower is live and the index was read lately: its position stands for
            # the store's. (Hundreds of waiters each reading the index on every change made
            # the connection pool run dry under a 400-instance rollout.)
            if index < self._latest:
                return self._latest
        else:
            # What the follower had seen *before* the index is read: the follower keeps reading
            # while we wait for the reply, so comparing with its later position would mistake
            # ordinary progress for the store going backwards (and restart it for nothing).
            seen_before = self._latest
            current = await self.index()
            if current != index:
                return current  # newer, or older: the store restarted; the caller resyncs
            if current < seen_before:
                # Redis lost its data (restart without persistence, a flush): the follower
                # reads from an id that will not come again. Start it over from here.
                await self._stop_follower()
                self._latest = current
                self._recent.clear()
            self._ensure_follower(current)
        try:
            async with asyncio.timeout(within):
                while self._latest <= index:
                    await self._changed.wait()
        except TimeoutError:
            pass
        return self._latest if self._latest > index else index

    def changed_keys(self, after: int, upto: int) -> set[tuple[str, str]] | None:
        if upto > self._latest:
            return None  # the follower has not read that far yet
        return recent_keys(reversed(self._recent), after, upto)

    async def _stop_follower(self) -> None:
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.cancel()
            # Bounded: a follower stuck closing a dead connection must not hold us up.
            await asyncio.wait({follower}, timeout=FOLLOWER_STOP_S)

    def _ensure_follower(self, current: int) -> None:
        if self._follower is None or self._follower.done():
            self._latest = max(self._latest, current)
            self._follower = asyncio.create_task(self._follow(), name="fleetwatch.redis-follow")

    async def _follow(self) -> None:
        """Read the event stream as it grows and wake waiters; one Redis connection for all."""
        blocking = self._connect.client(COMMAND_TIMEOUT_S + FOLLOW_BLOCK_MS / 1000)
        try:
            while True:
                try:
                    with keep_cancellation():
                        reply: Any = await blocking.xread(
                            {self._k["events"]: f"{self._latest}-1"},
                            block=FOLLOW_BLOCK_MS,
                            count=100,
                        )
                except (RedisError, OSError):
                    await asyncio.sleep(0.5)  # Redis is away; waiters time out on their own
                    continue
                for _, entries in reply or []:
                    for entry_id, values in entries:
                        service, _, instance_id = _text(values.get("field", "")).partition("/")
                        self._recent.append((_entry_index(entry_id), (service, instance_id)))
                    if entries:
                        self._latest = self._recent[-1][0]
                        self._changed.set()
                        self._changed = asyncio.Event()
        finally:
            with contextlib.suppress(TimeoutError, RedisError, OSError):
                async with asyncio.timeout(FOLLOWER_STOP_S):
                    await blocking.aclose()

    async def put_load(self, service: str, instance_id: str, load: Mapping[str, float]) -> None:
        async with translated("write load"):
            await self._scripts["put_load"](
                keys=[self._k["inst"], self._k["load"]],
                args=[_field(service, instance_id), json.dumps(dict(load))],
            )

    def _sli_key(self, service: str) -> str:
        return f"{self._tag}:sli:{service}"

    async def add_sli(self, service: str, minute: int, counts: Mapping[str, float]) -> None:
        key = self._sli_key(service)
        async with (
            translated("write SLO history"),
            self._client.pipeline(transaction=False) as pipe,
        ):
            for name, value in counts.items():
                pipe.hincrbyfloat(key, f"{minute}:{name}", value)
            await pipe.execute()

    async def sli_minutes(self, service: str, since: int) -> dict[int, dict[str, float]]:
        async with translated("read SLO history"):
            raw = await self._client.hgetall(self._sli_key(service))
        buckets: dict[int, dict[str, float]] = {}
        for field, value in raw.items():
            minute_text, _, name = _text(field).partition(":")
            minute = int(minute_text)
            if minute >= since:
                buckets.setdefault(minute, {})[name] = float(_text(value))
        return buckets

    async def trim_sli(self, service: str, before: int) -> None:
        key = self._sli_key(service)
        async with translated("trim SLO history"):
            fields = [
                f for f in await self._client.hkeys(key) if int(_text(f).partition(":")[0]) < before
            ]
            if fields:
                await self._client.hdel(key, *fields)

    async def loads(self, service: str) -> dict[str, dict[str, float]]:
        async with translated("read load"):
            ids = sorted(_text(i) for i in await self._client.smembers(self._svc(service)))
            if not ids:
                return {}
            raws = await self._client.hmget(self._k["load"], [_field(service, i) for i in ids])
        return {i: json.loads(raw) for i, raw in zip(ids, raws, strict=True) if raw}

    async def note(self, kind: EventType, reason: str) -> Event:
        field = _field(*NOTICE_KEY)
        async with translated("record a notice"):
            reply = await self._scripts["note"](
                keys=[self._k["index"], self._k["events"]],
                args=[kind.value, field, reason, self._history],
            )
        return Event(int(reply[0]), kind, *NOTICE_KEY, int(reply[1]) / 1000, None, None, reason)

    async def node_heartbeat(self, node_id: str, ttl: float) -> list[str]:
        async with translated("node heartbeat"):
            nodes = await self._scripts["node_heartbeat"](
                keys=[self._k["nodes"]], args=[node_id, int(ttl * 1000)]
            )
        return sorted(_text(n) for n in nodes)

    async def node_leave(self, node_id: str) -> None:
        async with translated("node leave"):
            await self._client.zrem(self._k["nodes"], node_id)

    async def orphans(self) -> list[str]:
        """Entries pointing at an instance that is gone (``index``, ``lease``, ``load``), empty
        services, and instances their service does not list: always empty unless the store was
        damaged. Checked in one script, so it is consistent while nodes write."""
        async with translated("orphan check"):
            keys = [self._k["inst"], self._k["lease"], self._k["load"], self._k["services"]]
            found = await self._scripts["orphans"](keys=keys, args=[f"{self._tag}:svc:"])
        return [str(entry) for entry in found]

    async def aclose(self) -> None:
        await self._stop_follower()
        await self._client.aclose()
        await self._connect.aclose()


def _gone(field: str, remaining_ms: int) -> InstanceGone:
    service, _, instance_id = field.partition("/")
    return InstanceGone(
        f"{field} was deregistered by an operator; it may register again in "
        f"{remaining_ms / 1000:.0f}s",
        service=service,
        instance_id=instance_id,
    )
