"""Full reads under steady churn: they finish, and following the events after them converges.

A full listing used to retry until the change index stayed put across it; at a few hundred
writes a second on Redis it never did, so a monitor starting (or taking over a dead node's
share) during churn never finished its first sync, and blocking queries spun.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

from fleetwatch.registry._model import CheckSpec, EventType, Instance
from fleetwatch.registry._monitor import Monitor
from fleetwatch.registry._store import RegistryStore, consistent_read
from fleetwatch.registry.stores._redis import RedisStore
from fleetwatch_testing import free_port
from tests._support.waiting import poll_until

FLEET = 200
REMOVALS = frozenset({EventType.DEREGISTERED, EventType.EVICTED})


def _member(number: int, port: int) -> Instance:
    # A long interval: the watchers exist, but probe (a refused port, cheaply) rarely.
    spec = CheckSpec(interval=60.0, timeout=0.5)
    return Instance(
        service="llm", instance_id=f"i{number}", host="127.0.0.1", port=port, check=spec
    )


@contextlib.asynccontextmanager
async def _churn(store: RegistryStore, per_second: int) -> AsyncIterator[asyncio.Task[None]]:
    """FLEET instances, then ``per_second`` joins and as many leaves a second until exit (or
    until the task it yields is cancelled)."""
    port = free_port()  # nothing listens there
    for n in range(FLEET):
        await store.upsert(_member(n, port))
    numbers = itertools.count(FLEET)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        while True:
            tick = loop.time()
            for _ in range(per_second // 20):
                n = next(numbers)
                await store.upsert(_member(n, port))
                await store.remove("llm", f"i{n - FLEET}")
            await asyncio.sleep(max(0.0, tick + 0.05 - loop.time()))

    task = asyncio.create_task(run())
    try:
        await asyncio.sleep(0.3)  # under way
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_listing_under_churn_replays_to_the_truth(redis_store: RedisStore) -> None:
    """Under 200 joins and 200 leaves a second, a consistent read returns, and its answer plus
    the events after its index is exactly what the store holds once the churn stops."""
    async with _churn(redis_store, 200):
        async with asyncio.timeout(5):
            index, listed = await consistent_read(redis_store, redis_store.instances)
    state = {i.key: i for i in listed}
    for event in await redis_store.events_after(index, limit=100_000):
        if event.type in REMOVALS:
            state.pop(event.key, None)
        elif event.instance is not None:
            state[event.key] = event.instance
    truth = {i.key: i for i in await redis_store.instances()}
    assert len(truth) >= FLEET  # (one more if the churn stopped between a join and a leave)
    assert state == truth


async def test_a_monitor_starting_under_churn_watches_the_whole_fleet(
    redis_store: RedisStore,
) -> None:
    """A monitor started during 200 joins and 200 leaves a second finishes its first sync and,
    following the changes, ends up watching exactly the registered fleet."""
    async with _churn(redis_store, 200) as churn, Monitor(redis_store) as monitor:

        async def synced() -> bool:  # the first sync has finished
            return monitor.watched > 0

        await poll_until(synced, True, within=5)
        await asyncio.sleep(0.5)  # keep churning while it follows
        churn.cancel()
        stored = {i.key for i in await redis_store.instances()}

        async def watching() -> set[tuple[str, str]]:
            return monitor.watching()

        await poll_until(watching, stored, within=5)
    assert len(stored) >= FLEET
