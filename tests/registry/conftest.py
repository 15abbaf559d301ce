"""Both stores behind one fixture, so every contract test runs against each."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from fleetwatch.registry.model import Instance
from fleetwatch.registry.store import RegistryStore
from fleetwatch.registry.stores import MemoryStore
from fleetwatch.registry.stores.redis import RedisStore
from fleetwatch.sandbox import RedisServer

HISTORY = 50


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RegistryStore]:
    """A fresh store: in memory, or on the session's real Redis under a namespace of its own."""
    if request.param == "memory":
        yield MemoryStore(history=HISTORY)
        return
    redis: RedisServer = request.getfixturevalue("redis_server")
    redis_store = RedisStore(redis.url, namespace=f"test-{uuid.uuid4().hex[:8]}", history=HISTORY)
    try:
        yield redis_store
    finally:
        await redis_store.aclose()


def instance(instance_id: str = "a", service: str = "llm", **changes: object) -> Instance:
    """A minimal instance on loopback."""
    base = Instance(service=service, instance_id=instance_id, host="127.0.0.1", port=8000)
    return base.with_changes(**changes) if changes else base
