"""Shared judgement for checks whose answer was fine but may have been slow."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleetwatch.health._result import Observation
from fleetwatch.health._status import HealthStatus


def timed_observation(
    what: str,
    elapsed_s: float,
    slow_after: float | None,
    metadata: Mapping[str, Any] | None = None,
    *,
    problems: list[str] | None = None,
) -> Observation:
    """Healthy with its latency, or degraded when slow or when ``problems`` were found."""
    elapsed_ms = elapsed_s * 1000.0
    issues = list(problems or [])
    if slow_after is not None and elapsed_s > slow_after:
        issues.append(f"slow: {elapsed_ms:.1f}ms > {slow_after * 1000:.0f}ms")
    status = HealthStatus.DEGRADED if issues else HealthStatus.HEALTHY
    output = f"{what} {'; '.join(issues)}" if issues else f"{what} healthy: {elapsed_ms:.1f}ms"
    return Observation(status, output, round(elapsed_ms, 3), "ms", dict(metadata or {}))
