"""Blocking reads: a change that lands while the answer is being read is never missed."""

from __future__ import annotations

import asyncio

from fleetwatch.registry.model import Instance, InstanceStatus
from fleetwatch.registry.stores import MemoryStore
from fleetwatch.server.blocking import blocking_read


async def test_change_during_the_read_returns_at_once() -> None:
    """If the index moves while answering, the answer is re-read and returned without waiting."""
    store = MemoryStore()
    await store.upsert(Instance(service="s", instance_id="a", host="127.0.0.1", port=1))
    held = await store.index()
    calls = 0

    async def read() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:  # another request changes the registry while we read
            await store.set_status("s", "a", InstanceStatus.MAINTENANCE)
        instance = await store.get("s", "a")
        assert instance is not None
        return instance.status.value

    async with asyncio.timeout(1):
        index, answer = await blocking_read(store, held, 30.0, read)
    assert (index, answer) == (held + 1, "maintenance")
