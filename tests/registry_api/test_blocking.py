"""Blocking reads: a change that lands while the answer is being read is never missed."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from fleetwatch.registry._model import Instance, InstanceStatus
from fleetwatch.registry.stores import MemoryStore
from fleetwatch.registry_api._blocking import ClientGone, blocking_read, unless_disconnected


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


async def test_changes_elsewhere_since_the_clients_index_are_slept_through() -> None:
    """A client following instance a, whose index the registry has since passed with changes
    to b only, is not answered at once (that made 400 agents poll without pause); a change to
    a then answers it, and a change to a since its index answers at once."""
    store = MemoryStore()
    await store.upsert(Instance(service="s", instance_id="a", host="127.0.0.1", port=1))
    held = await store.index()
    await store.upsert(Instance(service="s", instance_id="b", host="127.0.0.1", port=2))

    async def read() -> str:
        instance = await store.get("s", "a")
        assert instance is not None
        return instance.status.value

    def concerns(key: tuple[str, str]) -> bool:
        return key == ("s", "a")

    waiting = asyncio.create_task(blocking_read(store, held, 30.0, read, concerns=concerns))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await store.set_status("s", "a", InstanceStatus.MAINTENANCE)
    async with asyncio.timeout(1):
        index, answer = await waiting
    assert (index, answer) == (held + 2, "maintenance")
    async with asyncio.timeout(1):
        assert await blocking_read(store, held, 30.0, read, concerns=concerns) == (
            held + 2,
            "maintenance",
        )


async def test_client_going_away_ends_the_wait() -> None:
    """A disconnect during a blocking read cancels it and says so (no error of our own)."""
    store = MemoryStore()
    messages: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    await messages.put({"type": "http.request", "body": b"", "more_body": False})

    async def receive() -> dict[str, object]:
        return await messages.get()

    request = Request({"type": "http", "method": "GET", "headers": []}, receive)  # type: ignore[arg-type]

    async def read() -> int:
        return 1

    waiting = asyncio.create_task(unless_disconnected(request, blocking_read(store, 0, 30.0, read)))
    await asyncio.sleep(0.05)
    await messages.put({"type": "http.disconnect"})
    with pytest.raises(ClientGone):
        async with asyncio.timeout(1):
            await waiting
