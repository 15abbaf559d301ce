"""Verdicts for the probe groups: liveness, readiness, startup, and everything together."""

from __future__ import annotations

from collections.abc import Mapping

from fleetwatch.health._aggregate import ScoreThresholds, Verdict, Vote, aggregate, summarize
from fleetwatch.health._check import Group
from fleetwatch.health._scheduler import CheckState
from fleetwatch.health._status import HealthStatus


def members(states: Mapping[str, CheckState], group: Group | None) -> list[CheckState]:
    """The checks in ``group`` (all checks when ``group`` is ``None``)."""
    if group is None:
        return list(states.values())
    return [s for s in states.values() if group in s.settings.groups]


def vote(state: CheckState) -> Vote:
    """A check's vote: its stable (hysteresis) status, weight and last duration."""
    return Vote(
        name=state.settings.name,
        status=state.status,
        weight=state.settings.weight,
        critical=state.settings.critical,
        duration_ms=state.result.duration_ms if state.result else None,
    )


def evaluate(
    states: Mapping[str, CheckState],
    group: Group | None,
    thresholds: ScoreThresholds | None = None,
) -> Verdict:
    """The verdict for one group.

    Liveness ignores checks that have not reported yet (or reported ``unknown``) and passes when
    it has none: a process that answers is alive, and restarting it for lack of data would only
    make things worse. Every other group is ``unknown`` (so failing) until each of its checks
    has reported once: traffic should not go where nothing has been checked yet. A startup group
    with no checks of its own, when other checks exist, passes once every check has reported
    (the application has finished starting its checks); with no checks at all it is unknown.
    """
    chosen = members(states, group)
    if group is Group.LIVENESS:
        chosen = [
            s for s in chosen if s.result is not None and s.status is not HealthStatus.UNKNOWN
        ]
        if not chosen:
            return Verdict(HealthStatus.HEALTHY, "alive", None, summarize([]))
    if group is Group.STARTUP and not chosen and states:
        waiting = [s.settings.name for s in states.values() if s.result is None]
        if not waiting:
            return Verdict(HealthStatus.HEALTHY, "started", None, summarize([]))
        message = f"waiting for the first result of: {', '.join(waiting)}"
        return Verdict(HealthStatus.UNKNOWN, message, None, summarize([]))
    waiting = [s.settings.name for s in chosen if s.result is None]
    if waiting:
        message = f"waiting for the first result of: {', '.join(waiting)}"
        return Verdict(HealthStatus.UNKNOWN, message, None, summarize(map(vote, chosen)))
    return aggregate(map(vote, chosen), thresholds)
