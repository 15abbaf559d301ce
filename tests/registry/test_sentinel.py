"""A Redis primary failover through Sentinel, with real servers on loopback, loses nothing."""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio

from fleetwatch.errors import RegistryUnavailable
from fleetwatch.registry.stores._redis import RedisStore
from fleetwatch_testing import RedisServer, SentinelServer
from tests._support.instances import instance


async def test_failover_loses_no_registration() -> None:
    """Registrations made before the primary dies are all there on the promoted replica."""
    with contextlib.ExitStack() as stack:
        primary = stack.enter_context(RedisServer())
        stack.enter_context(RedisServer(extra_args=["--replicaof", "127.0.0.1", str(primary.port)]))
        sentinel = stack.enter_context(SentinelServer(primary))
        await asyncio.sleep(1.5)  # the sentinel has asked the primary about its replica
        store = RedisStore(sentinel.url, namespace="failover")
        try:
            for n in range(20):
                await store.upsert(instance(f"i{n}"))
            before = await store.index()
            # Replication is asynchronous: what is proven is that the failover keeps what the
            # replica holds, so the replica is given the writes before the primary dies.
            async with redis.asyncio.Redis(port=primary.port) as direct:
                assert await direct.wait(1, 5000) == 1
            await asyncio.to_thread(primary.kill)
            failures = 0
            async with asyncio.timeout(30):
                while True:
                    try:
                        await store.upsert(instance("after-failover"))
                        break
                    except RegistryUnavailable:
                        failures += 1
                        await asyncio.sleep(0.2)
            names = {i.instance_id for i in await store.instances("llm")}
            after = await store.index()
        finally:
            await store.aclose()
    assert failures > 0  # the primary really was gone for a while
    assert names == {f"i{n}" for n in range(20)} | {"after-failover"}
    assert after == before + 1  # the change index carried over with the data
