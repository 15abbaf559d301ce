"""Pickers: the last step, one instance from the candidates and their total scores."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Protocol

from fleetwatch.registry._model import Instance


class Picker(Protocol):
    """Chooses one of ``instances`` (never empty); ``totals`` are their weighted scores."""

    def pick(self, instances: Sequence[Instance], totals: Sequence[float]) -> Instance:
        """The chosen instance."""
        ...


class HighestScore:
    """The best total; ties at random (so equal instances share the work)."""

    def pick(self, instances: Sequence[Instance], totals: Sequence[float]) -> Instance:
        best = max(totals)
        return random.choice([i for i, t in zip(instances, totals, strict=True) if t == best])


class TwoChoices:
    """Two at random, the better total wins: near the best without a herd on one instance
    when the scores lag (the power of two choices)."""

    def pick(self, instances: Sequence[Instance], totals: Sequence[float]) -> Instance:
        if len(instances) == 1:
            return instances[0]
        first, second = random.sample(range(len(instances)), 2)
        return instances[first] if totals[first] >= totals[second] else instances[second]


class RoundRobin:
    """Each in turn, scores ignored."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def pick(self, instances: Sequence[Instance], totals: Sequence[float]) -> Instance:
        del totals
        return instances[next(self._counter) % len(instances)]


class Uniform:
    """Uniformly at random, scores ignored."""

    def pick(self, instances: Sequence[Instance], totals: Sequence[float]) -> Instance:
        del totals
        return random.choice(instances)


class ByWeight:
    """At random in proportion to effective weight (a degraded instance gets a tenth)."""

    def pick(self, instances: Sequence[Instance], totals: Sequence[float]) -> Instance:
        del totals
        weights = [i.effective_weight for i in instances]
        if sum(weights) <= 0:
            return random.choice(instances)
        return random.choices(instances, weights=weights, k=1)[0]
