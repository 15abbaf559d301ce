"""``fleetwatch rollout``: replace a service's instances without dropping a request."""

from fleetwatch.rollout.plan import RolloutFailed, RolloutSettings
from fleetwatch.rollout.runner import Rollout

__all__ = ["Rollout", "RolloutFailed", "RolloutSettings"]
