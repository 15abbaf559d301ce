"""``fleetwatch rollout`` on one machine: the fleet's deployment controller with this machine
as its one host."""

from fleetwatch.rollout._local import Rollout, RolloutReport
from fleetwatch.rollout._plan import RolloutFailed, RolloutSettings

__all__ = ["Rollout", "RolloutFailed", "RolloutReport", "RolloutSettings"]
