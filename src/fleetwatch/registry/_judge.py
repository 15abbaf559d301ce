"""The status machine: what one probe result means for an instance."""

from __future__ import annotations

from dataclasses import dataclass

from fleetwatch.registry._model import CHECKED_STATUSES, ROUTABLE_STATUSES, Instance, InstanceStatus
from fleetwatch.registry._prober import ProbeResult

#: Where passing checks lead, and what failing ones leave: the routable statuses.
_PASSING = ROUTABLE_STATUSES
#: Checked statuses that ``rise`` consecutive passes lead out of (starting, unavailable).
_RISING = CHECKED_STATUSES - ROUTABLE_STATUSES


@dataclass(frozen=True, slots=True)
class Judgement:
    """The status after a probe, and the counters that led there."""

    status: InstanceStatus
    failures: int
    successes: int


def judge(
    instance: Instance, failures: int, successes: int, result: ProbeResult, now: float
) -> Judgement:
    """Apply one probe result to an instance whose counters stand at ``failures``/``successes``.

    - ``starting`` and ``unavailable`` become ``available`` (or ``degraded`` on a 429) after
      ``rise`` consecutive passes; ``available`` and ``degraded`` switch between each other at once.
    - A passing instance becomes ``unavailable`` after ``fall`` consecutive failures, or at once
      on a definitive failure (connection refused: nothing listens there any more).
    - ``starting`` within its ``startup_grace`` stays ``starting`` whatever happens: a server
      loading its model (vLLM binds its port first) is not down.
    - ``maintenance`` and ``draining`` belong to the operator: the counters move, the status not.
    """
    spec = instance.check
    if result.passed:
        failures, successes = 0, successes + 1
        target = InstanceStatus.DEGRADED if result.degraded else InstanceStatus.AVAILABLE
        status = instance.status
        if status in _PASSING or (status in _RISING and successes >= spec.rise):
            status = target
        return Judgement(status, failures, successes)
    failures, successes = failures + 1, 0
    status = instance.status
    enough = result.definitive or failures >= spec.fall
    if status in _PASSING and enough:
        status = InstanceStatus.UNAVAILABLE
    elif status is InstanceStatus.STARTING and enough:
        in_grace = now - instance.registered_at < spec.startup_grace
        if not in_grace:
            status = InstanceStatus.UNAVAILABLE
    return Judgement(status, failures, successes)
