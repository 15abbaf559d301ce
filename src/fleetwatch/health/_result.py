"""What a check observes and the full result the runner makes of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fleetwatch.health._status import HealthStatus


@dataclass(frozen=True, slots=True)
class Observation:
    """What one execution of a check saw. Checks return this; the runner adds timing.

    ``observed_value``/``observed_unit`` is the check's main measurement (health+json's
    ``observedValue``); when a check leaves it out, the runner reports the check's duration in
    milliseconds. ``metadata`` holds small facts (pool sizes, memory ratios); ``details`` holds
    anything larger a verbose reader may want.
    """

    status: HealthStatus
    output: str = ""
    observed_value: float | str | None = None
    observed_unit: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    details: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One execution of a check: the usual result fields plus the observed value and unit."""

    name: str
    status: HealthStatus
    output: str
    duration_s: float
    timestamp: datetime
    observed_value: float | str | None = None
    observed_unit: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    details: Mapping[str, Any] | None = None

    @property
    def duration_ms(self) -> float:
        """Duration in milliseconds, as health reports show it."""
        return self.duration_s * 1000.0
