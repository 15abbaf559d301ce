"""Open a store from a URL: ``memory``, ``redis://``, ``rediss://``, ``redis+sentinel://``."""

from __future__ import annotations

from fleetwatch.errors import ConfigError
from fleetwatch.registry._store import RegistryStore
from fleetwatch.registry.stores import MemoryStore


def open_store(url: str, *, namespace: str = "fleetwatch") -> RegistryStore:
    """The store a ``--store`` value names."""
    if url == "memory":
        return MemoryStore()
    if url.startswith(("redis://", "rediss://", "unix://", "redis+sentinel://")):
        # Imported here: redis-py is the `redis` extra, and the memory store needs none of it.
        from fleetwatch.registry.stores._redis import RedisStore  # noqa: PLC0415

        return RedisStore(url, namespace=namespace)
    raise ConfigError(
        f"unknown store {url!r}: use 'memory' (one machine) or a Redis URL such as "
        "'redis://127.0.0.1:6379/0' (many nodes), or through Sentinel "
        "'redis+sentinel://127.0.0.1:26379/mymaster/0'"
    )
