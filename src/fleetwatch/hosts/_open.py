"""Open the host store beside the instance store: the same ``--store`` URL."""

from __future__ import annotations

from fleetwatch.errors import ConfigError
from fleetwatch.hosts._memory import MemoryHostStore
from fleetwatch.hosts._store import HostStore


def open_host_store(url: str, *, namespace: str = "fleetwatch") -> HostStore:
    """The host store for a ``--store`` value (``memory`` or a Redis URL)."""
    if url == "memory":
        return MemoryHostStore()
    if url.startswith(("redis://", "rediss://", "unix://", "redis+sentinel://")):
        # Imported here: redis-py is the `redis` extra.
        from fleetwatch.hosts._redis import RedisHostStore  # noqa: PLC0415

        return RedisHostStore(url, namespace=namespace)
    raise ConfigError(f"unknown store {url!r}: use 'memory' or a Redis URL")
