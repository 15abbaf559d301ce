"""What only the Redis store must prove: shared state, clean keys, surviving Redis restarts."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from fleetwatch.errors import IndexReset, RegistryUnavailable
from fleetwatch.registry._model import EventType
from fleetwatch.registry.stores._redis import RedisStore
from fleetwatch_testing import RedisServer
from tests._support.instances import instance


async def _keys(url: str, namespace: str) -> dict[str, int]:
    """Every key of a namespace with its size, found by SCAN (never KEYS)."""
    sizes = {}
    async with aioredis.Redis.from_url(url, decode_responses=True) as client:
        async for key in client.scan_iter(match=f"{{{namespace}}}:*"):
            kind = await client.type(key)
            size = {
                "hash": client.hlen,
                "zset": client.zcard,
                "set": client.scard,
                "stream": client.xlen,
            }.get(kind)
            sizes[key] = await size(key) if size else 1
    return sizes


async def _all_keys(url: str) -> set[str]:
    """Every key of the db, by SCAN."""
    async with aioredis.Redis.from_url(url, decode_responses=True) as client:
        return {key async for key in client.scan_iter()}


async def test_two_nodes_share_one_registry(redis_server: RedisServer) -> None:
    """What one node writes, another reads, and its blocking wait wakes for it."""
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    one = RedisStore(redis_server.url, namespace=namespace)
    two = RedisStore(redis_server.url, namespace=namespace)
    try:
        index = await two.index()
        waiter = asyncio.create_task(two.wait_for_change(index, 5.0))
        await asyncio.sleep(0.05)
        await one.upsert(instance())
        assert await asyncio.wait_for(waiter, 2.0) == index + 1
        assert [i.instance_id for i in await two.instances("llm")] == ["a"]
    finally:
        await one.aclose()
        await two.aclose()


async def test_eviction_leaves_no_orphaned_keys(redis_server: RedisServer) -> None:
    """After eviction no index, lease or load entry points at it; every key left is namespaced."""
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    existing = await _all_keys(redis_server.url)  # other tests' keys, in the shared server
    store = RedisStore(redis_server.url, namespace=namespace)
    try:
        for name in ("a", "b", "c"):
            await store.upsert(instance(name, ttl=0.1))
            await store.put_load("llm", name, {"waiting": 1})
        await asyncio.sleep(0.15)
        for service, instance_id in await store.lapsed():
            await store.evict_if_lapsed(service, instance_id, "lease lapsed")
        keys = await _keys(redis_server.url, namespace)
        # Wider than _keys' match: every key of the db this test left behind, whatever its name.
        created = await _all_keys(redis_server.url) - existing
    finally:
        await store.aclose()
    tag = "{" + namespace + "}"
    assert created
    assert all(key.startswith(f"{tag}:") for key in created), created
    assert created == set(keys)
    leftovers = {key: size for key, size in keys.items() if not key.endswith((":index", ":events"))}
    assert leftovers == {}
    assert keys[f"{tag}:events"] == 6  # 3 registered + 3 evicted, the history clients catch up on


async def test_redis_restart_without_persistence_is_noticed(own_redis: RedisServer) -> None:
    """If Redis comes back empty, an old index is ahead of the store's: clients must resync."""
    store = RedisStore(own_redis.url, namespace="restart")
    try:
        for name in ("a", "b"):
            await store.upsert(instance(name))
        held = await store.index()
        await store.wait_for_change(held, 0.05)  # the follower runs from before the restart
        await asyncio.to_thread(own_redis.stop)
        with pytest.raises(RegistryUnavailable, match="Redis store"):
            await store.index()
        await asyncio.to_thread(own_redis.start)
        await store.upsert(instance("c"))
        assert await store.index() < held
        with pytest.raises(IndexReset, match="ahead"):
            await store.events_after(held)
        assert await store.wait_for_change(held, 5.0) < held  # at once, not after the wait
        # The follower (started before the restart) follows the new history too.
        now = await store.index()
        waiter = asyncio.create_task(store.wait_for_change(now, 5.0))
        await asyncio.sleep(0.1)
        assert not waiter.done()  # a real wait, not a spin
        await store.upsert(instance("d"))
        assert await asyncio.wait_for(waiter, 2.0) == now + 1
    finally:
        await store.aclose()


async def test_registration_survives_in_order_for_a_node_that_was_away(
    redis_server: RedisServer,
) -> None:
    """A node that was away while N events happened reads all N, in order, when back."""
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    writer = RedisStore(redis_server.url, namespace=namespace)
    try:
        start = await writer.index()
        for i in range(25):
            await writer.upsert(instance(f"i{i}"))
        returning = RedisStore(redis_server.url, namespace=namespace)
        try:
            events = await returning.events_after(start, limit=100)
        finally:
            await returning.aclose()
    finally:
        await writer.aclose()
    assert [e.instance_id for e in events] == [f"i{i}" for i in range(25)]
    assert all(e.type is EventType.REGISTERED for e in events)


async def test_orphan_check_is_empty_for_a_sound_store_and_names_damage(
    redis_server: RedisServer,
) -> None:
    """After registrations, load reports and removals nothing dangles; an instance deleted
    behind the store's back shows up as its index, lease and load entries."""
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    store = RedisStore(redis_server.url, namespace=namespace)
    try:
        for name in ("a", "b", "c"):
            await store.upsert(instance(name, ttl=30))
            await store.put_load("llm", name, {"waiting": 1})
        await store.remove("llm", "a", reason="test")
        sound = await store.orphans()
        async with aioredis.Redis.from_url(redis_server.url) as client:
            await client.hdel(f"{{{namespace}}}:inst", "llm/b")  # damage, on purpose
        damaged = await store.orphans()
    finally:
        await store.aclose()
    assert sound == []
    assert sorted(damaged) == ["index llm/b", "lease llm/b", "load llm/b"]
