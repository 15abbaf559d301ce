"""Choosing one instance for a client: the routing pipelines of :mod:`fleetwatch.routing`
with nothing known of the request (round-robin, random, weighted, least outstanding,
power-of-two-choices on a latency EWMA or on load)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from fleetwatch.registry._model import Instance
from fleetwatch.routing import LoadStats, RouterSettings, Signals, Strategy, build_pipeline
from fleetwatch.routing._strategies import strategy_named

__all__ = ["Balancer", "LoadStats", "Strategy", "balancer_for"]


class Balancer(Protocol):
    """Picks one of the given routable instances (never called with an empty list)."""

    def pick(self, instances: Sequence[Instance]) -> Instance:
        """The chosen instance."""
        ...


def balancer_for(strategy: Strategy | str, stats: LoadStats) -> Balancer:
    """A balancer by name, over this client's own request figures."""
    chosen = strategy_named(strategy)
    return build_pipeline(RouterSettings(strategy=chosen.value), Signals(stats=stats))
