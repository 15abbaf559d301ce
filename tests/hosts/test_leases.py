"""The host stores' guarantees, on both: one lease holder at a time and a lapsed one fenced,
no late report on a finished order, and no order id used twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from fleetwatch.errors import Conflict, Fenced
from fleetwatch.hosts import HostStore, MemoryHostStore, Order, OrderAction, OrderState
from fleetwatch.hosts._lease import Fence
from fleetwatch.hosts._redis import RedisHostStore
from fleetwatch_testing import RedisServer


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[HostStore]:
    """A host store in memory, or on the session's real Redis under a namespace of its own."""
    if request.param == "memory":
        yield MemoryHostStore()
        return
    redis: RedisServer = request.getfixturevalue("redis_server")
    found = RedisHostStore(redis.url, namespace=f"t-{uuid.uuid4().hex[:8]}")
    try:
        yield found
    finally:
        await found.aclose()


def order(order_id: str) -> Order:
    return Order(order_id, "h1", OrderAction.START, "llm", profile="llama", version="1")


async def test_one_holder_at_a_time_and_renewal_keeps_the_epoch(store: HostStore) -> None:
    """The first node gets epoch 1; another gets nothing while it runs; renewing keeps 1."""
    first = await store.acquire_lease("controller", "node-a", ttl=5)
    assert first is not None
    assert first.epoch == 1
    assert await store.acquire_lease("controller", "node-b", ttl=5) is None
    again = await store.acquire_lease("controller", "node-a", ttl=5)
    assert again is not None
    assert again.epoch == 1
    renewed = await store.renew_lease("controller", "node-a", 1, ttl=5)
    assert renewed is not None
    assert renewed.expires_at >= first.expires_at


async def test_a_lapsed_leader_is_fenced_even_before_it_knows(store: HostStore) -> None:
    """Once the lease lapses and another node takes it (a higher epoch), the old leader's
    renewal fails and its fenced write is refused, storing nothing; the new leader's lands."""
    old = await store.acquire_lease("controller", "node-a", ttl=0.3)
    assert old is not None
    await asyncio.sleep(0.5)
    new = await store.acquire_lease("controller", "node-b", ttl=5)
    assert new is not None
    assert new.epoch == old.epoch + 1
    assert await store.renew_lease("controller", "node-a", old.epoch, ttl=5) is None
    with pytest.raises(Fenced):
        await store.add_order(order("stale"), fence=Fence("controller", old.epoch))
    stored, created = await store.add_order(order("fresh"), fence=Fence("controller", new.epoch))
    assert created
    _, orders = await store.orders("h1")
    assert [o.order_id for o in orders] == [stored.order_id] == ["fresh"]


async def test_a_released_lease_is_taken_at_once_with_a_new_epoch(store: HostStore) -> None:
    """A clean shutdown releases the lease: the next node takes it without waiting its ttl."""
    held = await store.acquire_lease("controller", "node-a", ttl=30)
    assert held is not None
    await store.release_lease("controller", "node-a", held.epoch)
    taken = await store.acquire_lease("controller", "node-b", ttl=30)
    assert taken is not None
    assert taken.epoch == held.epoch + 1
    with pytest.raises(Fenced):
        await store.add_order(order("after-release"), fence=Fence("controller", held.epoch))


async def test_a_finished_order_takes_no_late_report(store: HostStore) -> None:
    """Once an order ended, a stale report cannot move it back (409)."""
    stored, _ = await store.add_order(order("o-1"))
    await store.report("h1", stored.order_id, OrderState.AVAILABLE, "", "llm-a")
    with pytest.raises(Conflict, match="already ended available"):
        await store.report("h1", stored.order_id, OrderState.STARTED, "", "")


async def test_an_order_id_stays_taken_after_its_order_is_forgotten(
    request: pytest.FixtureRequest,
) -> None:
    """With a history of one finished order, the first order's id, resent after it was
    forgotten, is refused rather than carried out again."""
    redis: RedisServer = request.getfixturevalue("redis_server")
    smalls: list[HostStore] = [
        MemoryHostStore(order_history=1),
        RedisHostStore(redis.url, namespace=f"t-{uuid.uuid4().hex[:8]}", order_history=1),
    ]
    for small in smalls:
        try:
            await small.add_order(order("o-1"))
            await small.report("h1", "o-1", OrderState.AVAILABLE, "", "llm-a")
            await small.add_order(order("o-2"))
            await small.report("h1", "o-2", OrderState.AVAILABLE, "", "llm-b")
            await small.add_order(order("o-3"))  # trims o-1 (two finished, one kept)
            _, kept = await small.orders("h1")
            assert "o-1" not in {o.order_id for o in kept}
            with pytest.raises(Conflict, match="used by an order that finished"):
                await small.add_order(order("o-1"))
        finally:
            await small.aclose()
