"""Deployments on both stores: revisions by compare-and-set, their own feed, fenced progress."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from fleetwatch.deployments import DeploymentSpec, Phase, Progress
from fleetwatch.deployments._redis import RedisDeploymentStore
from fleetwatch.deployments._store import (
    DeploymentStore,
    MemoryDeploymentStore,
    put_progress,
    put_spec,
    set_paused,
)
from fleetwatch.errors import Conflict, Fenced
from fleetwatch.hosts import HostStore, MemoryHostStore
from fleetwatch.hosts._lease import Fence
from fleetwatch.hosts._redis import RedisHostStore
from fleetwatch_testing import RedisServer


@dataclass
class Stores:
    hosts: HostStore
    deployments: DeploymentStore


@pytest.fixture(params=["memory", "redis"])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[Stores]:
    """The host store (for leases) and the deployment store, in memory or on real Redis."""
    if request.param == "memory":
        hosts = MemoryHostStore()
        yield Stores(hosts, MemoryDeploymentStore(hosts))
        return
    redis: RedisServer = request.getfixturevalue("redis_server")
    on_redis = RedisHostStore(redis.url, namespace=f"t-{uuid.uuid4().hex[:8]}")
    try:
        yield Stores(on_redis, RedisDeploymentStore(on_redis))
    finally:
        await on_redis.aclose()


def spec(version: str, replicas: int = 3) -> DeploymentSpec:
    return DeploymentSpec("llm", "llama", version, replicas, params={"ctx": "4096"})


async def test_revisions_count_up_and_keep_history(stores: Stores) -> None:
    """Each new spec is the next revision; the previous ones are kept; pause is recorded."""
    for version in ("1", "2", "3"):
        latest = await put_spec(stores.deployments, spec(version))
    assert (latest.revision, [n for n, _ in latest.history]) == (3, [2, 1])
    paused = await set_paused(stores.deployments, "llm", True)
    assert paused.paused
    found = await stores.deployments.deployment("llm")
    assert found is not None
    assert (found.spec.version, found.paused, found.spec_at(1).version) == ("3", True, "1")


async def test_racing_writers_lose_no_revision(stores: Stores) -> None:
    """Ten concurrent new specs make ten revisions: compare-and-set retries the loser."""
    await asyncio.gather(*(put_spec(stores.deployments, spec(str(n))) for n in range(10)))
    found = await stores.deployments.deployment("llm")
    assert found is not None
    assert found.revision == 10


async def test_progress_needs_the_lease_and_the_current_revision(stores: Stores) -> None:
    """The leader's progress lands; a fenced-out epoch's is refused; progress for a revision
    the deployment has left is dropped."""
    await put_spec(stores.deployments, spec("1"))
    lease = await stores.hosts.acquire_lease("controller", "node-a", ttl=0.3)
    assert lease is not None
    fence = Fence("controller", lease.epoch)
    done = Progress(revision=1, phase=Phase.COMPLETE, available=3, replicas=3)
    stored = await put_progress(stores.deployments, "llm", done, fence)
    assert stored.progress.phase is Phase.COMPLETE
    await asyncio.sleep(0.5)
    taken = await stores.hosts.acquire_lease("controller", "node-b", ttl=5)
    assert taken is not None
    with pytest.raises(Fenced):
        await put_progress(stores.deployments, "llm", done, fence)
    await put_spec(stores.deployments, spec("2"))
    with pytest.raises(Conflict, match="no longer at revision 1"):
        await put_progress(stores.deployments, "llm", done, Fence("controller", taken.epoch))


async def test_the_deployment_feed_wakes_a_waiting_reader(stores: Stores) -> None:
    """A reader blocked on the feed's index returns when a deployment changes."""
    index, _ = await stores.deployments.deployments()
    waiting = asyncio.create_task(stores.deployments.wait_for_change(index, 10))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await put_spec(stores.deployments, spec("1"))
    async with asyncio.timeout(5):
        assert await waiting > index
