"""Routing: filters keep the instances that may serve a request, scorers rate them (load,
latency, prefix-cache affinity, session affinity), a picker chooses one.

Used by the gateway for every request and by :class:`~fleetwatch.discovery.DiscoveryClient`
for ``get_instance``.
"""

from fleetwatch.routing._filters import (
    CircuitsAllow,
    Filter,
    Routable,
    ServesModel,
    TenantAllowed,
    advertised_models,
    serves,
)
from fleetwatch.routing._pipeline import Pipeline
from fleetwatch.routing._prefix import PrefixIndex
from fleetwatch.routing._request import RouteRequest, prompt_blocks, render_prompt
from fleetwatch.routing._scorers import (
    LatencyScorer,
    LoadScorer,
    OutstandingScorer,
    PrefixScorer,
    Scorer,
    SessionScorer,
)
from fleetwatch.routing._settings import RouterSettings
from fleetwatch.routing._signals import LoadStats, Signals
from fleetwatch.routing._strategies import (
    SCORER_NAMES,
    Strategy,
    build_pipeline,
    scorer_weights,
    strategy_named,
)

__all__ = [
    "SCORER_NAMES",
    "CircuitsAllow",
    "Filter",
    "LatencyScorer",
    "LoadScorer",
    "LoadStats",
    "OutstandingScorer",
    "Pipeline",
    "PrefixIndex",
    "PrefixScorer",
    "Routable",
    "RouteRequest",
    "RouterSettings",
    "Scorer",
    "ServesModel",
    "SessionScorer",
    "Signals",
    "Strategy",
    "TenantAllowed",
    "advertised_models",
    "build_pipeline",
    "prompt_blocks",
    "render_prompt",
    "scorer_weights",
    "serves",
    "strategy_named",
]
