"""Choosing one instance: round-robin, random, weighted, least outstanding requests, and
power-of-two-choices on a latency EWMA."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from fleetwatch.registry.model import Instance

Key = tuple[str, str]
#: Weight of the newest latency sample in the moving average (about the last ten requests).
EWMA_ALPHA = 0.3


class Strategy(StrEnum):
    """Balancing strategies by name (for config and CLI)."""

    ROUND_ROBIN = "round-robin"
    RANDOM = "random"
    WEIGHTED = "weighted"
    LEAST_OUTSTANDING = "least-outstanding"
    P2C_EWMA = "p2c-ewma"
    LEAST_LOAD = "least-load"


@dataclass
class LoadStats:
    """What a client knows of each instance from its own requests: in flight, latency EWMA."""

    outstanding: dict[Key, int] = field(default_factory=dict)
    latency_ewma: dict[Key, float] = field(default_factory=dict)
    #: What each instance (or its agent) last published on the registry's load channel.
    reported: dict[Key, dict[str, float]] = field(default_factory=dict)

    def begin(self, key: Key) -> None:
        """A request started."""
        self.outstanding[key] = self.outstanding.get(key, 0) + 1

    def end(self, key: Key, latency_s: float | None) -> None:
        """A request ended (``latency_s`` None when it failed before an answer)."""
        self.outstanding[key] = max(0, self.outstanding.get(key, 0) - 1)
        if latency_s is not None:
            old = self.latency_ewma.get(key)
            self.latency_ewma[key] = (
                latency_s if old is None else EWMA_ALPHA * latency_s + (1 - EWMA_ALPHA) * old
            )


class Balancer(Protocol):
    """Picks one of the given routable instances (never called with an empty list)."""

    def pick(self, instances: Sequence[Instance]) -> Instance:
        """The chosen instance."""
        ...


class RoundRobin:
    """Each in turn."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def pick(self, instances: Sequence[Instance]) -> Instance:
        return instances[next(self._counter) % len(instances)]


class RandomChoice:
    """Uniformly at random."""

    def pick(self, instances: Sequence[Instance]) -> Instance:
        return random.choice(instances)


class Weighted:
    """At random in proportion to effective weight (a degraded instance gets a tenth)."""

    def pick(self, instances: Sequence[Instance]) -> Instance:
        weights = [i.effective_weight for i in instances]
        if sum(weights) <= 0:
            return random.choice(instances)
        return random.choices(instances, weights=weights, k=1)[0]


class LeastOutstanding:
    """The instance with the fewest requests in flight from this client (ties: random)."""

    def __init__(self, stats: LoadStats) -> None:
        self.stats = stats

    def pick(self, instances: Sequence[Instance]) -> Instance:
        fewest = min(self.stats.outstanding.get(i.key, 0) for i in instances)
        return random.choice(
            [i for i in instances if self.stats.outstanding.get(i.key, 0) == fewest]
        )


class PowerOfTwoEwma:
    """Two at random; the one with the lower latency EWMA x (outstanding + 1) wins.

    Unmeasured instances score zero, so new instances get tried.
    """

    def __init__(self, stats: LoadStats) -> None:
        self.stats = stats

    def _cost(self, instance: Instance) -> float:
        ewma = self.stats.latency_ewma.get(instance.key, 0.0)
        return ewma * (self.stats.outstanding.get(instance.key, 0) + 1)

    def pick(self, instances: Sequence[Instance]) -> Instance:
        if len(instances) == 1:
            return instances[0]
        first, second = random.sample(list(instances), 2)
        return first if self._cost(first) <= self._cost(second) else second


class LeastLoad:
    """Two at random; the less loaded wins, by what the servers report (waiting requests,
    running requests or busy slots, KV-cache use) plus this client's own requests in flight.

    Reported figures lag by up to a load-report interval; the client's own count is current,
    so a burst does not pile onto one instance between reports. Unreported instances count
    only this client's requests.
    """

    def __init__(self, stats: LoadStats) -> None:
        self.stats = stats

    def score(self, instance: Instance) -> float:
        """Queue first, then work in hand, then memory pressure as a tie-breaker."""
        load = self.stats.reported.get(instance.key, {})
        running = load.get("running", load.get("busy_slots", 0.0))
        return (
            2.0 * load.get("waiting", 0.0)
            + running
            + load.get("kv_cache_usage", 0.0)
            + self.stats.outstanding.get(instance.key, 0)
        )

    def pick(self, instances: Sequence[Instance]) -> Instance:
        if len(instances) == 1:
            return instances[0]
        first, second = random.sample(list(instances), 2)
        return first if self.score(first) <= self.score(second) else second


def balancer_for(strategy: Strategy | str, stats: LoadStats) -> Balancer:
    """A balancer by name."""
    try:
        chosen = Strategy(strategy)
    except ValueError:
        known = ", ".join(s.value for s in Strategy)
        raise ValueError(f"unknown balancing strategy {strategy!r}; known: {known}") from None
    match chosen:
        case Strategy.ROUND_ROBIN:
            return RoundRobin()
        case Strategy.RANDOM:
            return RandomChoice()
        case Strategy.WEIGHTED:
            return Weighted()
        case Strategy.LEAST_OUTSTANDING:
            return LeastOutstanding(stats)
        case Strategy.P2C_EWMA:
            return PowerOfTwoEwma(stats)
        case Strategy.LEAST_LOAD:
            return LeastLoad(stats)
