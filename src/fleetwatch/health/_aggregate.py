"""The composite verdict: critical checks, weights and a weighted score."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fleetwatch.health._status import HealthStatus


@dataclass(frozen=True, slots=True)
class ScoreThresholds:
    """Weighted-score cut-offs: >= ``healthy`` is healthy, >= ``degraded`` is degraded.

    0.8 and 0.5 are the defaults.
    """

    healthy: float = 0.8
    degraded: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.degraded <= self.healthy <= 1.0:
            raise ValueError(
                "score thresholds must satisfy 0 <= degraded <= healthy <= 1, got "
                f"healthy={self.healthy}, degraded={self.degraded}"
            )


@dataclass(frozen=True, slots=True)
class Vote:
    """One check's say in an aggregate: its status, weight, criticality and duration."""

    name: str
    status: HealthStatus
    weight: float = 1.0
    critical: bool = False
    duration_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    """The summary: counts per status, average duration and health percentage."""

    total: int
    healthy: int
    degraded: int
    unhealthy: int
    unknown: int
    avg_duration_ms: float
    health_percentage: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """The aggregate status with the message, score and summary that explain it."""

    status: HealthStatus
    message: str
    score: float | None
    summary: Summary
    critical_failed: tuple[str, ...] = ()


def summarize(votes: Iterable[Vote]) -> Summary:
    """Count statuses and average the durations of the checks that have one."""
    votes = list(votes)
    counts = dict.fromkeys(HealthStatus, 0)
    for vote in votes:
        counts[vote.status] += 1
    durations = [v.duration_ms for v in votes if v.duration_ms is not None]
    total = len(votes)
    return Summary(
        total=total,
        healthy=counts[HealthStatus.HEALTHY],
        degraded=counts[HealthStatus.DEGRADED],
        unhealthy=counts[HealthStatus.UNHEALTHY],
        unknown=counts[HealthStatus.UNKNOWN],
        avg_duration_ms=sum(durations) / len(durations) if durations else 0.0,
        health_percentage=100.0 * counts[HealthStatus.HEALTHY] / total if total else 0.0,
    )


def aggregate(votes: Iterable[Vote], thresholds: ScoreThresholds | None = None) -> Verdict:
    """Combine check statuses: critical checks first, then the weighted score.

    Any critical check unhealthy makes the whole unhealthy. Otherwise each check scores its
    status (healthy 1, degraded 0.5, unhealthy and unknown 0) times its weight; the weighted
    mean against ``thresholds`` decides. No checks, or only zero weights, gives ``unknown``.
    """
    thresholds = thresholds or ScoreThresholds()
    votes = list(votes)
    summary = summarize(votes)
    if not votes:
        return Verdict(HealthStatus.UNKNOWN, "No health checks configured", None, summary)
    critical_failed = tuple(
        v.name for v in votes if v.critical and v.status is HealthStatus.UNHEALTHY
    )
    total_weight = sum(v.weight for v in votes)
    score = sum(v.weight * v.status.score for v in votes) / total_weight if total_weight else None
    if critical_failed:
        message = f"Critical checks failed: {', '.join(critical_failed)}"
        return Verdict(HealthStatus.UNHEALTHY, message, score, summary, critical_failed)
    if score is None:
        return Verdict(HealthStatus.UNKNOWN, "Unable to determine health status", None, summary)
    counts = (
        f"{summary.degraded} degraded, {summary.unhealthy} unhealthy, {summary.unknown} unknown"
    )
    if score >= thresholds.healthy:
        status = HealthStatus.HEALTHY
        message = (
            "All systems operational"
            if summary.healthy == summary.total
            else f"Operational ({counts})"
        )
    elif score >= thresholds.degraded:
        status, message = HealthStatus.DEGRADED, f"Some systems degraded ({counts})"
    else:
        status, message = HealthStatus.UNHEALTHY, f"Multiple systems failing ({counts})"
    return Verdict(status, message, score, summary)
