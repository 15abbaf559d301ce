"""Scorers: how good each candidate is for a request, from 0 (worst) to 1 (best).

A pipeline adds the scores up, each times its scorer's weight, and a picker chooses by the
totals. Load-like scorers are relative to the least loaded candidate, so that a weight says
how many requests of extra load one unit of another score is worth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from fleetwatch.registry._model import Instance
from fleetwatch.routing._affinity import Ring, bounded_choice
from fleetwatch.routing._prefix import PrefixIndex
from fleetwatch.routing._request import RouteRequest
from fleetwatch.routing._signals import Signals


class Scorer(Protocol):
    """Scores candidates for one request."""

    name: str
    weight: float

    def score(self, request: RouteRequest, instances: Sequence[Instance]) -> list[float]:
        """One score in [0, 1] per instance, in order."""
        ...

    def chosen(self, request: RouteRequest, instance: Instance) -> None:
        """``instance`` was picked for ``request`` (scorers with memory learn from it)."""
        ...


def relative(values: Sequence[float]) -> list[float]:
    """1 for the lowest value, 1/2 one unit above it, 1/3 two units above..."""
    lowest = min(values)
    return [1.0 / (1.0 + value - lowest) for value in values]


class _LeastScorer:
    """Lower :meth:`value` is better, scored by :func:`relative`."""

    name = ""

    def __init__(self, signals: Signals, weight: float = 1.0) -> None:
        self.signals = signals
        self.weight = weight

    def value(self, instance: Instance) -> float:
        raise NotImplementedError

    def score(self, request: RouteRequest, instances: Sequence[Instance]) -> list[float]:
        del request
        return relative([self.value(i) for i in instances])

    def chosen(self, request: RouteRequest, instance: Instance) -> None:
        del request, instance


class LoadScorer(_LeastScorer):
    """Less loaded is better: the servers' reported queue and work plus this client's
    requests in flight (see :meth:`Signals.load`)."""

    name = "load"

    def value(self, instance: Instance) -> float:
        return self.signals.load(instance.key)


class OutstandingScorer(_LeastScorer):
    """Fewer of this client's requests in flight is better (nothing reported is used)."""

    name = "outstanding"

    def value(self, instance: Instance) -> float:
        return float(self.signals.stats.outstanding.get(instance.key, 0))


class LatencyScorer:
    """Lower expected latency is better: the latency EWMA times (requests in flight + 1); the
    best measured candidate scores 1, the others the best's share of their cost. Unmeasured
    instances score 1 too, so new ones get tried."""

    name = "latency"

    def __init__(self, signals: Signals, weight: float = 1.0) -> None:
        self.signals = signals
        self.weight = weight

    def _cost(self, instance: Instance) -> float:
        stats = self.signals.stats
        ewma = stats.latency_ewma.get(instance.key, 0.0)
        return ewma * (stats.outstanding.get(instance.key, 0) + 1)

    def score(self, request: RouteRequest, instances: Sequence[Instance]) -> list[float]:
        del request
        costs = [self._cost(i) for i in instances]
        best = min((cost for cost in costs if cost > 0), default=0.0)
        return [1.0 if cost <= 0 else best / cost for cost in costs]

    def chosen(self, request: RouteRequest, instance: Instance) -> None:
        del request, instance


class PrefixScorer:
    """The share of the prompt's blocks the instance probably still has in its KV cache
    (what this router last sent it).

    When no candidate holds any of it (a new conversation, a one-off prompt), the candidate
    holding the fewest distinct prompts (conversations, by their first block) scores 1 and the
    others 0, so conversations spread evenly over the instances rather than by the load of the
    moment: a server given more conversations than its slots evicts them from each other.
    (sglang-router's smallest-tree rule counts characters instead; in the benchmark that left
    3, 4 and 5 conversations on three servers, as long and short ones balanced out.)
    Either way, an instance holding more than ``max_imbalance`` requests beyond the least busy
    (:meth:`Signals.requests`) scores 0: prefix-only routing would pile a popular prompt's
    traffic onto one instance.
    """

    name = "prefix"

    def __init__(
        self, index: PrefixIndex, signals: Signals, weight: float = 1.0, max_imbalance: float = 4
    ) -> None:
        self.index = index
        self.signals = signals
        self.weight = weight
        self.max_imbalance = max_imbalance

    def score(self, request: RouteRequest, instances: Sequence[Instance]) -> list[float]:
        if not request.blocks:
            return [0.0] * len(instances)
        # In requests held, not in load units: load counts waiting twice and adds this
        # client's requests to the servers' reports that already include them, which sent
        # conversations away from their cache with 3 turns in flight on a 2-slot server.
        held_requests = [self.signals.requests(i.key) for i in instances]
        ceiling = min(held_requests) + self.max_imbalance
        within = [count <= ceiling for count in held_requests]
        total = len(request.blocks)
        shares = [
            self.index.matched(i, request.blocks) / total if ok else 0.0
            for i, ok in zip(instances, within, strict=True)
        ]
        if any(shares):
            return shares
        held = [self.index.conversations(i.key) for i in instances]
        fewest = min(count for count, ok in zip(held, within, strict=True) if ok)
        return [
            1.0 if ok and count == fewest else 0.0 for count, ok in zip(held, within, strict=True)
        ]

    def chosen(self, request: RouteRequest, instance: Instance) -> None:
        self.index.sent(instance, request.blocks)


class SessionScorer:
    """1 for the instance the request's session is pinned to (consistent hashing with
    bounded loads: it moves when its instance leaves, drains or is ``load_factor`` times
    busier than the average), 0 for the others, and 0 for all without a session."""

    name = "session"

    def __init__(self, signals: Signals, weight: float = 1.0, load_factor: float = 1.25) -> None:
        self.signals = signals
        self.weight = weight
        self.load_factor = load_factor
        self._ring = Ring()

    def pinned(self, request: RouteRequest, instances: Sequence[Instance]) -> Instance | None:
        """The instance ``request``'s session goes to among ``instances``."""
        if request.session is None or not instances:
            return None
        return bounded_choice(
            self._ring,
            request.session,
            instances,
            lambda i: self.signals.load(i.key),
            self.load_factor,
        )

    def score(self, request: RouteRequest, instances: Sequence[Instance]) -> list[float]:
        pinned = self.pinned(request, instances)
        return [1.0 if i is pinned else 0.0 for i in instances]

    def chosen(self, request: RouteRequest, instance: Instance) -> None:
        del request, instance
