"""Service-level objectives: availability and capacity SLIs, error budgets, burn rates."""

from fleetwatch.slo._objective import SloObjective
from fleetwatch.slo._tracker import BURN_WINDOWS, SloReport, SloTracker

__all__ = ["BURN_WINDOWS", "SloObjective", "SloReport", "SloTracker"]
