"""Registry stores for tests: each Redis store under a namespace of its own."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fleetwatch.registry.stores._redis import RedisStore

#: The history the contract tests' stores keep (small, so that trimming is tested).
HISTORY = 50


@contextlib.asynccontextmanager
async def fresh_redis_store(url: str, **options: Any) -> AsyncIterator[RedisStore]:
    """A Redis store under a namespace of its own (tests share one Redis server), closed after."""
    redis_store = RedisStore(url, namespace=f"test-{uuid.uuid4().hex[:8]}", **options)
    try:
        yield redis_store
    finally:
        await redis_store.aclose()
