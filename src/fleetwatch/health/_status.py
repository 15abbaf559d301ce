"""Health status model and its mapping to the IETF health+json ``pass``/``warn``/``fail``."""

from __future__ import annotations

from enum import StrEnum


class HealthStatus(StrEnum):
    """The four statuses of a check: healthy, degraded, unhealthy, unknown.

    ``unknown`` means "no result yet" or "nothing configured": it fails readiness and startup
    (do not route to what you have not checked) and does not affect liveness.
    """

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"

    @property
    def health_json(self) -> str:
        """The health+json status: pass for healthy, warn for degraded, fail otherwise."""
        return _HEALTH_JSON[self]

    @property
    def score(self) -> float:
        """Weight of this status in the aggregate score (1 / 0.5 / 0 / 0)."""
        return _SCORE[self]

    @property
    def passing(self) -> bool:
        """Whether the status keeps serving: healthy and degraded do, the others do not."""
        return self in (HealthStatus.HEALTHY, HealthStatus.DEGRADED)


_HEALTH_JSON = {
    HealthStatus.HEALTHY: "pass",
    HealthStatus.DEGRADED: "warn",
    HealthStatus.UNHEALTHY: "fail",
    HealthStatus.UNKNOWN: "fail",
}
_SCORE = {
    HealthStatus.HEALTHY: 1.0,
    HealthStatus.DEGRADED: 0.5,
    HealthStatus.UNHEALTHY: 0.0,
    HealthStatus.UNKNOWN: 0.0,
}
