"""What the gateway saw, by service version: requests, failures, latency, time to first byte.

A rollout's canary step compares a new version's figures with the old one's.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleetwatch.observability.metrics import GatewayMetrics

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
    """Figures by version, and totals by outcome (mirrored to Prometheus when ``metrics``)."""

    service: str = ""
    metrics: GatewayMetrics | None = None
    by_version: dict[str, VersionFigures] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    retries: int = 0

    #: Client requests since the last SLO report: all, succeeded, first byte within threshold.
    sli: list[int] = field(default_factory=lambda: [0, 0, 0])
    latency_threshold_s: float = 2.0

    def request_done(self, *, ok: bool, first_byte_s: float | None) -> None:
        """One client request ended (whatever the attempts behind it)."""
        self.sli[0] += 1
        if ok:
            self.sli[1] += 1
            if first_byte_s is not None and first_byte_s <= self.latency_threshold_s:
                self.sli[2] += 1

    def take_sli(self) -> tuple[int, int, int]:
        """The counts since the last call, and start again."""
        counts, self.sli = self.sli, [0, 0, 0]
        return counts[0], counts[1], counts[2]

    def retried(self) -> None:
        self.retries += 1
        if self.metrics is not None:
            self.metrics.retries.labels(self.service).inc()

    def record(
        self,
        version: str,
        *,
        ok: bool,
        latency_s: float | None = None,
        first_byte_s: float | None = None,
    ) -> None:
        figures = self.by_version.setdefault(version, VersionFigures())
        figures.requests += 1
        if not ok:
            figures.failures += 1
        if latency_s is not None:
            figures.latency_s.append(latency_s)
            if self.metrics is not None:
                self.metrics.duration.labels(self.service).observe(latency_s)
        if first_byte_s is not None:
            figures.first_byte_s.append(first_byte_s)

    def outcome(self, name: str) -> None:
        self.outcomes[name] = self.outcomes.get(name, 0) + 1
        if self.metrics is not None:
            self.metrics.requests.labels(self.service, name).inc()

    def snapshot(self) -> dict[str, Any]:
        return {
            "versions": {v: f.as_dict() for v, f in sorted(self.by_version.items())},
            "outcomes": dict(sorted(self.outcomes.items())),
            "retries": self.retries,
        }
