"""The store contract: the in-memory and the Redis store behave the same."""

from __future__ import annotations

import asyncio
from dataclasses import fields

import pytest

from fleetwatch.errors import IndexReset, InstanceGone
from fleetwatch.registry._model import EventType, Instance, InstanceStatus
from fleetwatch.registry._store import CheckRecord, RegistryStore
from tests._support.instances import instance
from tests._support.stores import HISTORY

AVAILABLE, MAINTENANCE = InstanceStatus.AVAILABLE, InstanceStatus.MAINTENANCE


async def test_register_then_update(store: RegistryStore) -> None:
    """A new instance emits `registered`, a second write `updated`; each bumps the index."""
    first = await store.upsert(instance(tags=frozenset({"gpu"})))
    second = await store.upsert(instance(version="2"))
    assert (first.type, second.type) == (EventType.REGISTERED, EventType.UPDATED)
    assert second.index == first.index + 1 == await store.index()
    stored = await store.get("llm", "a")
    assert stored is not None
    assert stored.version == "2"
    assert [i.instance_id for i in await store.instances("llm")] == ["a"]
    assert await store.instances("other") == []


async def test_instances_round_trip_every_field(store: RegistryStore) -> None:
    """Tags, metadata, check spec, weight and ttl survive storage unchanged."""
    original = instance(
        tags=frozenset({"gpu", "a100"}),
        metadata={"model": "smollm2", "zone": "eu"},
        weight=2.5,
        ttl=12.0,
        scheme="https",
    )
    await store.upsert(original)
    stored = await store.get("llm", "a")
    assert stored is not None
    assert stored.status_since > 0  # stamped on the store's clock at registration
    assert stored == original.with_changes(status_since=stored.status_since)


async def test_status_change_emits_only_on_change(store: RegistryStore) -> None:
    """A new status emits `status_changed` with the previous one; the same status does not."""
    await store.upsert(instance())
    record = CheckRecord(at=1.5, output="HTTP 200", consecutive_failures=0, consecutive_successes=2)
    result = await store.set_status("llm", "a", AVAILABLE, reason="2 checks passed", record=record)
    assert result is not None
    updated, event = result
    assert event is not None
    assert (event.type, event.previous_status, event.reason) == (
        EventType.STATUS_CHANGED,
        InstanceStatus.STARTING,
        "2 checks passed",
    )
    assert (updated.status, updated.last_check_output, updated.consecutive_successes) == (
        AVAILABLE,
        "HTTP 200",
        2,
    )
    index = await store.index()
    again = await store.set_status("llm", "a", AVAILABLE, record=record)
    assert again is not None
    assert again[1] is None
    assert await store.index() == index


async def test_operator_status_is_not_overwritten_by_a_racing_check(store: RegistryStore) -> None:
    """With only_from, a check result does not undo an operator's maintenance."""
    await store.upsert(instance())
    await store.set_status("llm", "a", MAINTENANCE, reason="operator")
    raced = await store.set_status(
        "llm", "a", AVAILABLE, only_from=frozenset({InstanceStatus.STARTING})
    )
    assert raced is None
    stored = await store.get("llm", "a")
    assert stored is not None
    assert stored.status is MAINTENANCE
    assert await store.set_status("llm", "missing", AVAILABLE) is None


async def test_deregister_removes_everything_and_tombstones(store: RegistryStore) -> None:
    """Deregistration removes the instance and its load; a tombstone refuses its return."""
    await store.upsert(instance())
    await store.put_load("llm", "a", {"waiting": 3})
    event = await store.remove("llm", "a", reason="operator", tombstone_for=0.3)
    assert event is not None
    assert event.type is EventType.DEREGISTERED
    assert await store.get("llm", "a") is None
    assert await store.instances("llm") == []
    assert await store.loads("llm") == {}
    with pytest.raises(InstanceGone, match="deregistered by an operator"):
        await store.upsert(instance())
    with pytest.raises(InstanceGone):
        await store.renew("llm", "a")
    await asyncio.sleep(0.35)
    assert (await store.upsert(instance())).type is EventType.REGISTERED
    assert await store.remove("llm", "nope") is None


async def test_leases_lapse_and_renew(store: RegistryStore) -> None:
    """A lease lapses after ttl without heartbeat; a heartbeat pushes it out again."""
    await store.upsert(instance("short", ttl=0.2))
    await store.upsert(instance("long", ttl=30))
    assert await store.renew("llm", "unknown") is None
    await asyncio.sleep(0.12)
    assert await store.renew("llm", "short") is not None
    await asyncio.sleep(0.12)
    assert await store.lapsed() == []
    await asyncio.sleep(0.15)
    assert await store.lapsed() == [("llm", "short")]


async def test_a_check_record_renews_the_lease(store: RegistryStore) -> None:
    """The monitor's check is the checker vouching for the instance: its lease runs on."""
    await store.upsert(instance(ttl=0.2))
    record = CheckRecord(at=1.0, output="HTTP 200", consecutive_failures=0, consecutive_successes=1)
    for _ in range(3):
        await asyncio.sleep(0.1)
        await store.set_status("llm", "a", InstanceStatus.STARTING, record=record)
    assert await store.lapsed() == []
    stored = await store.get("llm", "a")
    assert stored is not None
    before = stored.status_since
    changed = await store.set_status("llm", "a", AVAILABLE)
    assert changed is not None
    # Restamped at the change: the same status written 3 times 0.1 s apart left it alone.
    assert changed[0].status_since > before
    assert changed[0].status_since - before >= 0.25


async def test_eviction_only_of_a_still_lapsed_lease(store: RegistryStore) -> None:
    """evict_if_lapsed removes a lapsed instance with all its entries, and spares a renewed one."""
    await store.upsert(instance("x", ttl=0.1))
    await store.put_load("llm", "x", {"waiting": 1})
    await asyncio.sleep(0.15)
    await store.renew("llm", "x")
    assert await store.evict_if_lapsed("llm", "x", "lease lapsed") is None
    await asyncio.sleep(0.15)
    event = await store.evict_if_lapsed("llm", "x", "lease lapsed")
    assert event is not None
    assert (event.type, event.reason) == (EventType.EVICTED, "lease lapsed")
    assert await store.instances() == []
    assert await store.lapsed() == []
    assert await store.loads("llm") == {}


async def test_events_after_catch_up_in_order(store: RegistryStore) -> None:
    """A reader that missed N events gets all N, in order, from its last index."""
    start = await store.index()
    for name in ("a", "b", "c"):
        await store.upsert(instance(name))
    await store.set_status("llm", "b", AVAILABLE)
    await store.remove("llm", "c")
    events = await store.events_after(start)
    assert [(e.type, e.instance_id) for e in events] == [
        (EventType.REGISTERED, "a"),
        (EventType.REGISTERED, "b"),
        (EventType.REGISTERED, "c"),
        (EventType.STATUS_CHANGED, "b"),
        (EventType.DEREGISTERED, "c"),
    ]
    assert [e.index for e in events] == list(range(start + 1, start + 6))
    assert await store.events_after(await store.index()) == []
    assert len(await store.events_after(start, limit=2)) == 2


async def test_index_ahead_or_history_gone_demands_a_resync(store: RegistryStore) -> None:
    """An index ahead of the store's, or older than its history, raises IndexReset."""
    await store.upsert(instance())
    with pytest.raises(IndexReset, match="ahead"):
        await store.events_after(await store.index() + 5)
    for i in range(HISTORY + 5):
        await store.set_status("llm", "a", AVAILABLE if i % 2 == 0 else InstanceStatus.DEGRADED)
    with pytest.raises(IndexReset, match="no longer kept"):
        await store.events_after(0)


async def test_wait_for_change_wakes_on_a_change(store: RegistryStore) -> None:
    """A blocking wait returns soon after a change, or at its limit with the same index."""
    index = await store.index()
    assert await store.wait_for_change(index, 0.05) == index

    async def later() -> None:
        await asyncio.sleep(0.1)
        await store.upsert(instance())

    writer = asyncio.create_task(later())
    loop = asyncio.get_running_loop()
    started = loop.time()
    woke = await store.wait_for_change(index, 5.0)
    await writer
    assert woke == index + 1
    assert loop.time() - started < 1.0
    assert await store.wait_for_change(index, 5.0) == index + 1  # already newer: at once


async def test_a_store_names_the_keys_it_saw_change_or_says_it_does_not_know(
    store: RegistryStore,
) -> None:
    """After a waiter has followed them, the keys of recent changes are known without a
    read; a range reaching back past what the node saw is unknown (None)."""
    start = await store.index()
    assert await store.wait_for_change(start, 0.05) == start  # a follower runs from here
    for name in ("a", "b", "a"):
        await store.upsert(instance(name))
    current = start
    async with asyncio.timeout(5):
        while current < start + 3:
            current = await store.wait_for_change(current, 1.0)
        while store.changed_keys(start, start + 3) is None:  # noqa: ASYNC110 - the Redis follower catches up
            await asyncio.sleep(0.01)
    assert store.changed_keys(start, start + 3) == {("llm", "a"), ("llm", "b")}
    assert store.changed_keys(start + 2, start + 3) == {("llm", "a")}
    assert store.changed_keys(start + 3, start + 3) == set()
    # Reaching back before the first change this node saw: not known.
    assert store.changed_keys(start - 5, start + 3) is None


async def test_load_figures_do_not_bump_the_index(store: RegistryStore) -> None:
    """Load travels on its own channel: writing it changes no index and wakes no one."""
    await store.upsert(instance())
    index = await store.index()
    await store.put_load("llm", "a", {"waiting": 4, "kv_cache": 0.5})
    await store.put_load("llm", "ghost", {"waiting": 1})
    assert await store.index() == index
    assert await store.loads("llm") == {"a": {"waiting": 4, "kv_cache": 0.5}}


def test_to_dict_names_every_field() -> None:
    """The hand-written serialisation covers every field of the dataclass (none forgotten;
    the derived key and base URL are worked out again on reading)."""
    assert set(instance().to_dict()) == {f.name for f in fields(Instance) if f.init}


async def test_notices_join_the_change_feed(store: RegistryStore) -> None:
    """A registry-wide notice (self-preservation) takes the next index, with its reason."""
    await store.upsert(instance())
    notice = await store.note(EventType.SELF_PRESERVATION_ENGAGED, "4 of 6 failing")
    [read] = await store.events_after(notice.index - 1)
    assert read.is_notice
    assert (read.type, read.reason, read.index) == (
        EventType.SELF_PRESERVATION_ENGAGED,
        "4 of 6 failing",
        await store.index(),
    )


async def test_sli_history_adds_up_reads_from_a_minute_and_trims(store: RegistryStore) -> None:
    """SLO counters accumulate per minute, read from a given minute on, and can be trimmed."""
    await store.add_sli("llm", 100, {"good": 1.0, "total": 1.0, "capacity": 0.5})
    await store.add_sli("llm", 100, {"good": 0.0, "total": 1.0})
    await store.add_sli("llm", 101, {"requests": 3.0})
    await store.add_sli("other", 100, {"good": 1.0})
    assert await store.sli_minutes("llm", 0) == {
        100: {"good": 1.0, "total": 2.0, "capacity": 0.5},
        101: {"requests": 3.0},
    }
    assert await store.sli_minutes("llm", 101) == {101: {"requests": 3.0}}
    await store.trim_sli("llm", 101)
    assert await store.sli_minutes("llm", 0) == {101: {"requests": 3.0}}
    assert await store.sli_minutes("other", 0) == {100: {"good": 1.0}}
