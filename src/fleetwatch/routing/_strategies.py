"""Named strategies: each a preset of scorers (with default weights) and a picker.

=================  ========================================  ===========================
strategy           scorers (default weight)                  picker
=================  ========================================  ===========================
round-robin        none                                      each in turn
random             none                                      uniform
weighted           none                                      by effective weight
least-outstanding  outstanding (1)                           highest score
p2c-ewma           latency (1)                               best of two at random
least-load         load (1)                                  best of two at random
prefix             prefix (2), load (1)                      highest score
session            session (1), load (0.5)                   highest score
=================  ========================================  ===========================

Weights given by name replace a preset's (0 removes that scorer) or add a scorer to it; the
three strategies that ignore scores take none.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from fleetwatch.routing._filters import Filter
from fleetwatch.routing._pickers import (
    ByWeight,
    HighestScore,
    Picker,
    RoundRobin,
    TwoChoices,
    Uniform,
)
from fleetwatch.routing._pipeline import Pipeline
from fleetwatch.routing._prefix import PrefixIndex
from fleetwatch.routing._scorers import (
    LatencyScorer,
    LoadScorer,
    OutstandingScorer,
    PrefixScorer,
    Scorer,
    SessionScorer,
)
from fleetwatch.routing._settings import RouterSettings
from fleetwatch.routing._signals import Signals


class Strategy(StrEnum):
    """Routing strategies by name (for config and CLI)."""

    ROUND_ROBIN = "round-robin"
    RANDOM = "random"
    WEIGHTED = "weighted"
    LEAST_OUTSTANDING = "least-outstanding"
    P2C_EWMA = "p2c-ewma"
    LEAST_LOAD = "least-load"
    PREFIX = "prefix"
    SESSION = "session"


SCORER_NAMES = ("load", "outstanding", "latency", "prefix", "session")

_PRESETS: dict[Strategy, tuple[dict[str, float], type[Picker]]] = {
    Strategy.ROUND_ROBIN: ({}, RoundRobin),
    Strategy.RANDOM: ({}, Uniform),
    Strategy.WEIGHTED: ({}, ByWeight),
    Strategy.LEAST_OUTSTANDING: ({"outstanding": 1.0}, HighestScore),
    Strategy.P2C_EWMA: ({"latency": 1.0}, TwoChoices),
    Strategy.LEAST_LOAD: ({"load": 1.0}, TwoChoices),
    Strategy.PREFIX: ({"prefix": 2.0, "load": 1.0}, HighestScore),
    Strategy.SESSION: ({"session": 1.0, "load": 0.5}, HighestScore),
}
_SCORE_BLIND = (Strategy.ROUND_ROBIN, Strategy.RANDOM, Strategy.WEIGHTED)


def strategy_named(name: Strategy | str) -> Strategy:
    """The strategy called ``name``, or a ValueError listing the known ones."""
    try:
        return Strategy(name)
    except ValueError:
        known = ", ".join(s.value for s in Strategy)
        raise ValueError(f"unknown routing strategy {name!r}; known: {known}") from None


def scorer_weights(strategy: Strategy, overrides: Mapping[str, float]) -> dict[str, float]:
    """The preset's weights with ``overrides`` applied (0 drops a scorer)."""
    unknown = sorted(set(overrides) - set(SCORER_NAMES))
    if unknown:
        raise ValueError(f"unknown scorer {unknown[0]!r}; known: {', '.join(SCORER_NAMES)}")
    bad = sorted(name for name, w in overrides.items() if not 0 <= w < float("inf"))
    if bad:
        raise ValueError(f"scorer {bad[0]!r}: a weight must be a finite number >= 0")
    if strategy in _SCORE_BLIND and any(overrides.values()):
        raise ValueError(f"strategy {strategy.value!r} ignores scores: it takes no weights")
    weights = {**_PRESETS[strategy][0], **overrides}
    return {name: w for name, w in weights.items() if w > 0}


def build_pipeline(
    settings: RouterSettings,
    signals: Signals,
    filters: tuple[Filter, ...] = (),
) -> Pipeline:
    """The pipeline ``settings`` describe, over ``signals``."""
    strategy = strategy_named(settings.strategy)
    weights = scorer_weights(strategy, settings.weights)
    scorers: list[Scorer] = []
    for name, weight in weights.items():
        match name:
            case "load":
                scorers.append(LoadScorer(signals, weight))
            case "outstanding":
                scorers.append(OutstandingScorer(signals, weight))
            case "latency":
                scorers.append(LatencyScorer(signals, weight))
            case "prefix":
                index = PrefixIndex(settings.cache_blocks)
                scorers.append(PrefixScorer(index, signals, weight, settings.max_imbalance))
            case "session":
                scorers.append(SessionScorer(signals, weight, settings.load_factor))
    return Pipeline(filters, tuple(scorers), _PRESETS[strategy][1]())
