"""Store implementations: the embedded in-memory store and the Redis store."""

from fleetwatch.registry.stores._memory import MemoryStore

__all__ = ["MemoryStore"]
