"""``fleetwatch rollout``: replace a service's instances without dropping a request."""

from fleetwatch.rollout._plan import RolloutFailed, RolloutSettings
from fleetwatch.rollout._runner import Rollout

__all__ = ["Rollout", "RolloutFailed", "RolloutSettings"]
