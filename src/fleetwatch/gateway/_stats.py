"""What the gateway saw, by service version: requests, failures, latency, time to first byte.

A rollout's canary step compares a new version's figures with the old one's.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fleetwatch.gateway._report import RequestReport

#: Latency samples kept per version (a sliding window for percentiles).
WINDOW = 2000


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


@dataclass
class VersionFigures:
    """One version's counters and recent latencies."""

    requests: int = 0
    failures: int = 0
    latency_s: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    first_byte_s: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def as_dict(self) -> dict[str, Any]:
        latency = list(self.latency_s)
        first = list(self.first_byte_s)
        return {
            "requests": self.requests,
            "failures": self.failures,
            "error_rate": self.failures / self.requests if self.requests else 0.0,
            "latency_p50_s": _p(latency, 50),
            "latency_p99_s": _p(latency, 99),
            "first_byte_p50_s": _p(first, 50),
            "first_byte_p99_s": _p(first, 99),
        }


@dataclass
class GatewayStats:
    """Figures by version (every attempt counts for its instance's version), totals by
    outcome (one per client request) and retries: a listener of request reports."""

    by_version: dict[str, VersionFigures] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    #: Streams broken after the first byte, by what became of them (see RequestReport).
    recoveries: dict[str, int] = field(default_factory=dict)
    seams_s: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def __call__(self, report: RequestReport) -> None:
        self.outcomes[report.outcome] = self.outcomes.get(report.outcome, 0) + 1
        self.retries += report.retries
        if report.recovery is not None:
            self.recoveries[report.recovery] = self.recoveries.get(report.recovery, 0) + 1
            self.seams_s.extend(report.seams_s)
        for attempt in report.attempts:
            if attempt.outcome in ("busy", "cancelled"):
                continue  # a refusal or a client gone says nothing of the version
            figures = self.by_version.setdefault(attempt.version, VersionFigures())
            figures.requests += 1
            if not attempt.ok:
                figures.failures += 1
            if attempt.latency_s is not None:
                figures.latency_s.append(attempt.latency_s)
            if attempt.first_byte_s is not None:
                figures.first_byte_s.append(attempt.first_byte_s)

    def snapshot(self) -> dict[str, Any]:
        return {
            "versions": {v: f.as_dict() for v, f in sorted(self.by_version.items())},
            "outcomes": dict(sorted(self.outcomes.items())),
            "retries": self.retries,
            "recoveries": dict(sorted(self.recoveries.items())),
            "seam_p50_s": _p(list(self.seams_s), 50),
            "seam_p99_s": _p(list(self.seams_s), 99),
        }


@dataclass
class SliCounter:
    """Client requests since the last SLO report: all, succeeded, first byte within the
    service's latency threshold (a listener of request reports)."""

    latency_threshold_s: float = 2.0
    _counts: list[int] = field(default_factory=lambda: [0, 0, 0])

    def __call__(self, report: RequestReport) -> None:
        if not report.counts_for_slo:
            return
        self._counts[0] += 1
        if report.ok:
            self._counts[1] += 1
            first = report.first_byte_s
            if first is not None and first <= self.latency_threshold_s:
                self._counts[2] += 1

    def take(self) -> tuple[int, int, int]:
        """The counts since the last call, and start again."""
        counts, self._counts = self._counts, [0, 0, 0]
        return counts[0], counts[1], counts[2]

    def put_back(self, counts: tuple[int, int, int]) -> None:
        """Counts :meth:`take` returned that could not be reported: sent with the next."""
        self._counts = [a + b for a, b in zip(self._counts, counts, strict=True)]
