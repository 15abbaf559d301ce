"""Request reports into the gateway's Prometheus series."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetwatch.gateway.report import RequestReport
from fleetwatch.observability.metrics import GatewayMetrics
from fleetwatch.routing import PrefixIndex


@dataclass
class MetricsListener:
    """Counts each request by outcome, its attempts' durations, retries, streamed figures
    and tokens; at scrape time, the prefix scorer's hits."""

    metrics: GatewayMetrics
    service: str
    prefix: PrefixIndex | None = None
    _prefix_seen: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        # Labelled children looked up once: labels() costs a lock and a dict per call.
        self._duration = self.metrics.duration.labels(self.service)
        self._outcomes: dict[str, Any] = {}
        self._tokens: dict[tuple[str, str], Any] = {}

    def __call__(self, report: RequestReport) -> None:
        metrics, service = self.metrics, self.service
        counter = self._outcomes.get(report.outcome)
        if counter is None:
            counter = self._outcomes[report.outcome] = metrics.requests.labels(
                service, report.outcome
            )
        counter.inc()
        for attempt in report.attempts:
            if attempt.latency_s is not None:
                self._duration.observe(attempt.latency_s)
        if report.retries:
            metrics.retries.labels(service).inc(report.retries)
        if report.streaming and report.ok:
            metrics.streamed(
                service,
                report.model,
                first=report.first_byte_s,
                chunks=max(0, report.events - 1),  # the last event is [DONE]
                total=report.elapsed_s,
            )
        usage = report.usage
        for kind, count in (
            ("prompt", usage.prompt),
            ("cached", usage.cached),
            ("completion", usage.completion),
        ):
            if count:
                key = (report.model, kind)
                tokens = self._tokens.get(key)
                if tokens is None:  # model labels are bounded: advertised names, else other
                    tokens = self._tokens[key] = metrics.tokens.labels(service, *key)
                tokens.inc(count)

    def refresh(self) -> None:
        """Bring the prefix counters up to the scorer's own (called at scrape time)."""
        if self.prefix is None:
            return
        looked_up, matched = self.prefix.stats.looked_up, self.prefix.stats.matched
        seen_looked_up, seen_matched = self._prefix_seen
        self.metrics.prefix_blocks.labels(self.service, "hit").inc(matched - seen_matched)
        missed = (looked_up - matched) - (seen_looked_up - seen_matched)
        self.metrics.prefix_blocks.labels(self.service, "miss").inc(missed)
        self._prefix_seen = (looked_up, matched)
