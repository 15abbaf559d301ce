"""Both stores behind one fixture, so every contract test runs against each."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fleetwatch.registry._store import RegistryStore
from fleetwatch.registry.stores import MemoryStore
from fleetwatch.registry.stores._redis import RedisStore
from fleetwatch_testing import RedisServer
from tests._support.stores import HISTORY, fresh_redis_store


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RegistryStore]:
    """A fresh store: in memory, or on the session's real Redis under a namespace of its own."""
    if request.param == "memory":
        yield MemoryStore(history=HISTORY)
        return
    redis: RedisServer = request.getfixturevalue("redis_server")
    async with fresh_redis_store(redis.url, history=HISTORY) as redis_store:
        yield redis_store


@pytest.fixture
async def redis_store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    """A fresh Redis store with the default history, on the session's real Redis."""
    async with fresh_redis_store(redis_server.url) as fresh:
        yield fresh
