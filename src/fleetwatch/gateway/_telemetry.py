"""Request reports into the gateway's Prometheus series."""

from __future__ import annotations

from dataclasses import dataclass

from fleetwatch.gateway._report import RequestReport
from fleetwatch.observability._metrics import GatewayMetrics
from fleetwatch.routing import PrefixIndex

#: Reports held at most between two scrapes before they go to Prometheus anyway.
FLUSH_EVERY = 4096


@dataclass
class MetricsListener:
    """Counts each request by outcome, its attempts' durations, retries, streamed figures
    and tokens; at scrape time, the prefix scorer's hits."""

    metrics: GatewayMetrics
    service: str
    prefix: PrefixIndex | None = None
    _prefix_seen: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        # Counted here and handed to Prometheus at scrape time (refresh): its counters take a
        # lock per increment and labels() a lock and a dict per call, on every request.
        self._duration = self.metrics.duration.labels(self.service)
        self._outcomes: dict[str, int] = {}
        self._tokens: dict[tuple[str, str], int] = {}
        self._durations: list[float] = []
        self._retries = 0

    def __call__(self, report: RequestReport) -> None:
        outcomes = self._outcomes
        outcomes[report.outcome] = outcomes.get(report.outcome, 0) + 1
        for attempt in report.attempts:
            if attempt.latency_s is not None:
                self._durations.append(attempt.latency_s)
        self._retries += report.retries
        if report.recovery is not None:
            self.metrics.recoveries.labels(self.service, report.recovery).inc()
            for seconds in report.seams_s:
                self.metrics.seam.labels(self.service).observe(seconds)
        if report.streaming and report.ok:
            self.metrics.streamed(
                self.service,
                report.model,
                first=report.first_byte_s,
                chunks=max(0, report.events - 1),  # the last event is [DONE]
                total=report.elapsed_s,
            )
        usage, tokens = report.usage, self._tokens
        for kind, count in (
            ("prompt", usage.prompt),
            ("cached", usage.cached),
            ("completion", usage.completion),
        ):
            if count:  # model labels are bounded: advertised names, else other
                key = (report.model, kind)
                tokens[key] = tokens.get(key, 0) + count
        if len(self._durations) >= FLUSH_EVERY:
            self._flush()  # nobody scrapes: keep what is held bounded

    def _flush(self) -> None:
        metrics, service = self.metrics, self.service
        outcomes, self._outcomes = self._outcomes, {}
        for outcome, count in outcomes.items():
            metrics.requests.labels(service, outcome).inc(count)
        durations, self._durations = self._durations, []
        for seconds in durations:
            self._duration.observe(seconds)
        tokens, self._tokens = self._tokens, {}
        for (model, kind), count in tokens.items():
            metrics.tokens.labels(service, model, kind).inc(count)
        retries, self._retries = self._retries, 0
        if retries:
            metrics.retries.labels(service).inc(retries)

    def refresh(self) -> None:
        """Hand what was counted since the last scrape to Prometheus, and bring the prefix
        counters up to the scorer's own (called at scrape time)."""
        self._flush()
        if self.prefix is None:
            return
        looked_up, matched = self.prefix.stats.looked_up, self.prefix.stats.matched
        seen_looked_up, seen_matched = self._prefix_seen
        self.metrics.prefix_blocks.labels(self.service, "hit").inc(matched - seen_matched)
        missed = (looked_up - matched) - (seen_looked_up - seen_matched)
        self.metrics.prefix_blocks.labels(self.service, "miss").inc(missed)
        self._prefix_seen = (looked_up, matched)
