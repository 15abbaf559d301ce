"""Which prompt blocks each instance has recently been sent: a bounded guess at its KV cache.

The router cannot see a server's cache, so it remembers what it sent where (least recently
used first out, at most ``capacity`` blocks per instance, an estimate of the server's cache
size). An instance that leaves, or comes back as a new process (another registration time),
starts empty: its cache went with the old process.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from fleetwatch.registry._model import Instance

Key = tuple[str, str]


@dataclass
class _Cache:
    identity: tuple[str, float]
    blocks: OrderedDict[int, None] = field(default_factory=OrderedDict)
    #: First blocks of the prompts held: one per conversation (or per shared system prompt).
    roots: set[int] = field(default_factory=set)


@dataclass
class PrefixStats:
    """Blocks looked up at the chosen instance and found there (the router's own guess)."""

    looked_up: int = 0
    matched: int = 0


class PrefixIndex:
    """Per instance, the most recent ``capacity`` block hashes sent there."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"prefix capacity must be >= 1 block, got {capacity}")
        self.capacity = capacity
        self._caches: dict[Key, _Cache] = {}
        self.stats = PrefixStats()

    @staticmethod
    def _identity(instance: Instance) -> tuple[str, float]:
        return instance.instance_id, instance.registered_at

    def _cache(self, instance: Instance) -> _Cache | None:
        cache = self._caches.get(instance.key)
        if cache is not None and cache.identity != self._identity(instance):
            del self._caches[instance.key]  # a restarted process: its cache is gone
            return None
        return cache

    def matched(self, instance: Instance, blocks: Sequence[int]) -> int:
        """How many leading blocks of the prompt ``instance`` probably still holds."""
        cache = self._cache(instance)
        if cache is None:
            return 0
        count = 0
        for block in blocks:  # chained hashes: the first miss ends the shared prefix
            if block not in cache.blocks:
                break
            count += 1
        return count

    def sent(self, instance: Instance, blocks: Sequence[int]) -> None:
        """``blocks`` went to ``instance``: now its most recent, the oldest beyond capacity out."""
        if not blocks:
            return
        self.stats.looked_up += len(blocks)
        self.stats.matched += self.matched(instance, blocks)
        cache = self._cache(instance)
        if cache is None:
            cache = self._caches[instance.key] = _Cache(self._identity(instance))
        cache.roots.add(blocks[0])
        for block in blocks:
            cache.blocks[block] = None
            cache.blocks.move_to_end(block)
        while len(cache.blocks) > self.capacity:
            gone, _ = cache.blocks.popitem(last=False)
            cache.roots.discard(gone)

    def keep_only(self, instances: Iterable[Instance]) -> None:
        """Forget every instance not in ``instances`` (gone from discovery)."""
        present = {i.key: self._identity(i) for i in instances}
        for key in [k for k, c in self._caches.items() if present.get(k) != c.identity]:
            del self._caches[key]

    def forget(self, key: Key) -> None:
        """Forget what was sent to ``key`` (it left)."""
        self._caches.pop(key, None)

    def conversations(self, key: Key) -> int:
        """Distinct prompts (by their first block) remembered for ``key``."""
        cache = self._caches.get(key)
        return len(cache.roots) if cache is not None else 0

    def size(self, key: Key) -> int:
        """Blocks remembered for ``key``."""
        cache = self._caches.get(key)
        return len(cache.blocks) if cache is not None else 0
