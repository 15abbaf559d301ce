"""Both stores behind one fixture, so every contract test runs against each."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fleetwatch.registry._model import Instance
from fleetwatch.registry._store import RegistryStore
from fleetwatch.registry.stores import MemoryStore
from fleetwatch.registry.stores._redis import RedisStore
from fleetwatch_testing import RedisServer

HISTORY = 50


@contextlib.asynccontextmanager
async def fresh_redis_store(url: str, **options: Any) -> AsyncIterator[RedisStore]:
    """A Redis store under a namespace of its own (tests share one Redis server), closed after."""
    redis_store = RedisStore(url, namespace=f"test-{uuid.uuid4().hex[:8]}", **options)
    try:
        yield redis_store
    finally:
        await redis_store.aclose()


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


def instance(instance_id: str = "a", service: str = "llm", **changes: object) -> Instance:
    """A minimal instance on loopback."""
    base = Instance(service=service, instance_id=instance_id, host="127.0.0.1", port=8000)
    return base.with_changes(**changes) if changes else base
