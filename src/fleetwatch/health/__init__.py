"""Health checks that are honest, cheap and fast.

Checks (built-in or your own :class:`HealthCheck`) run in the background on their own schedule
(:class:`HealthScheduler`); rise/fall hysteresis keeps statuses from flapping; :func:`aggregate`
combines them (critical checks, then a weighted score); :class:`HealthProbes` serves
``/livez``, ``/readyz``,
``/startupz`` and ``/health`` as ``application/health+json`` from the latest results.
"""

from fleetwatch.health._aggregate import ScoreThresholds, Summary, Verdict, Vote, aggregate
from fleetwatch.health._check import (
    DEPENDENCY_GROUPS,
    CheckSettings,
    Group,
    HealthCheck,
    run_check,
)
from fleetwatch.health._groups import evaluate
from fleetwatch.health._hysteresis import Hysteresis
from fleetwatch.health._probes import HealthProbes
from fleetwatch.health._result import CheckResult, Observation
from fleetwatch.health._scheduler import CheckState, HealthScheduler, Transition
from fleetwatch.health._status import HealthStatus

__all__ = [
    "DEPENDENCY_GROUPS",
    "CheckResult",
    "CheckSettings",
    "CheckState",
    "Group",
    "HealthCheck",
    "HealthProbes",
    "HealthScheduler",
    "HealthStatus",
    "Hysteresis",
    "Observation",
    "ScoreThresholds",
    "Summary",
    "Transition",
    "Verdict",
    "Vote",
    "aggregate",
    "evaluate",
    "run_check",
]
