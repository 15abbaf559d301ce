"""Consistent hashing with bounded loads: a session keeps its instance while that instance is
not much busier than the average, and moves to the next on the ring when it is, or when the
instance leaves or drains (Mirrokni, Thorup and Zadimoghaddam, 2016).

Adding or removing one instance moves only the sessions that hashed to it; the bound keeps a
popular session from piling work onto one instance.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Callable, Sequence

from fleetwatch.registry._model import Instance

#: Points per instance on the ring: enough for an even share at a handful of instances.
VIRTUAL_NODES = 64


def _point(text: str) -> int:
    # A stable hash (not Python's salted one): the same session maps to the same instance in
    # every gateway process, so gateways side by side agree.
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class Ring:
    """The hash ring of the current instances (rebuilt only when they change)."""

    def __init__(self) -> None:
        self._members: tuple[str, ...] = ()
        self._points: list[int] = []
        self._owners: list[str] = []

    def _rebuild(self, ids: tuple[str, ...]) -> None:
        pairs = sorted((_point(f"{i}#{n}"), i) for i in ids for n in range(VIRTUAL_NODES))
        self._points = [p for p, _ in pairs]
        self._owners = [i for _, i in pairs]
        self._members = ids

    def order(self, session: str, ids: Sequence[str]) -> list[str]:
        """The instances in the order ``session`` tries them: its own first, then clockwise."""
        members = tuple(sorted(set(ids)))
        if members != self._members:
            self._rebuild(members)
        if not self._points:
            return []
        start = bisect.bisect(self._points, _point(session))
        seen: list[str] = []
        for n in range(len(self._points)):
            owner = self._owners[(start + n) % len(self._points)]
            if owner not in seen:
                seen.append(owner)
                if len(seen) == len(members):
                    break
        return seen


def bounded_choice(
    ring: Ring,
    session: str,
    instances: Sequence[Instance],
    load: Callable[[Instance], float],
    factor: float,
) -> Instance:
    """The first instance on ``session``'s walk whose load stays within ``factor`` times the
    average once this request is added (at least one request always fits)."""
    by_id = {i.instance_id: i for i in instances}
    total = sum(load(i) for i in instances) + 1
    bound = max(1.0, math.ceil(factor * total / len(instances)))
    order = ring.order(session, list(by_id))
    for instance_id in order:
        if load(by_id[instance_id]) + 1 <= bound:
            return by_id[instance_id]
    return by_id[order[0]]
