"""Prometheus metrics for the probe server, the registry, the agent and the gateway.

Each server owns one :class:`prometheus_client.CollectorRegistry` (never the global one, so
several servers can share a process, as in tests and the demo) and serves it at ``/metrics``.
Hot paths only increment counters and observe histograms; gauges that describe state (check
statuses, instances by status, circuit states) are read when Prometheus scrapes.

Names follow Prometheus conventions: a ``fleetwatch_`` prefix, base units (``_seconds``),
``_total`` on counters. Labels stay bounded: service, check, status, outcome, model, event
type; instance ids only on per-instance circuit and LLM load gauges, whose cardinality is the
fleet's size.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fleetwatch._supervisor import CRASHES
from fleetwatch.health._result import CheckResult
from fleetwatch.health._scheduler import HealthScheduler
from fleetwatch.health._status import HealthStatus
from fleetwatch.registry._model import Event, EventType, InstanceStatus

if TYPE_CHECKING:  # the SLO tracker pulls in the registry's configuration and the stores
    from fleetwatch.slo._tracker import SloReport

#: Latency buckets from a fast health check (1 ms) to a slow generation (60 s).
SECONDS_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
Refresh = Callable[[], Awaitable[None]]


def metrics_route(registry: CollectorRegistry, refresh: Refresh | None = None) -> Route:
    """``GET /metrics`` in the Prometheus text format (``refresh`` runs first, if given)."""

    async def endpoint(request: Request) -> Response:
        del request
        if refresh is not None:
            await refresh()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", endpoint, methods=["GET"])


class _StateCollector(Collector):
    """A collector whose families are built from live state at scrape time."""

    def __init__(self, build: Callable[[], Iterable[Metric]]) -> None:
        self._build = build

    def collect(self) -> Iterable[Metric]:
        return self._build()


class TaskMetrics:
    """``fleetwatch_task_crashes_total{task}``: crashes of supervised background loops in
    this process (see ``fleetwatch._supervisor``); every server exports it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        registry.register(_StateCollector(self._families))

    @staticmethod
    def _families() -> Iterable[Metric]:
        crashes = CounterMetricFamily(
            "fleetwatch_task_crashes",
            "Crashes of supervised background loops (each is logged as task.crashed).",
            labels=["task"],
        )
        for task, count in sorted(CRASHES.items()):
            crashes.add_metric([task], count)
        return [crashes]


class HealthMetrics:
    """Check durations and statuses of one :class:`HealthScheduler`."""

    def __init__(self, scheduler: HealthScheduler, registry: CollectorRegistry) -> None:
        self.scheduler = scheduler
        self.duration = Histogram(
            "fleetwatch_check_duration_seconds",
            "Duration of each health check execution.",
            ["check"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.executions = Counter(
            "fleetwatch_check_executions",
            "Health check executions, by the raw status each returned.",
            ["check", "status"],
            registry=registry,
        )
        registry.register(_StateCollector(self._statuses))
        scheduler.listeners.append(self._observe)

    def _observe(self, result: CheckResult) -> None:
        self.duration.labels(result.name).observe(result.duration_s)
        self.executions.labels(result.name, result.status.value).inc()

    def _statuses(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "fleetwatch_check_status",
            "1 for each check's current status (after rise/fall), 0 for the others.",
            labels=["check", "status"],
        )
        for name, state in self.scheduler.states().items():
            for status in HealthStatus:
                family.add_metric([name, status.value], 1.0 if state.status is status else 0.0)
        yield family


class RegistryMetrics:
    """The registry's membership, changes, discovery latency and self-preservation."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.instances = Gauge(
            "fleetwatch_instances",
            "Registered instances by service and status.",
            ["service", "status"],
            registry=registry,
        )
        self.registrations = Counter(
            "fleetwatch_registrations", "New registrations.", ["service"], registry=registry
        )
        self.deregistrations = Counter(
            "fleetwatch_deregistrations", "Deregistrations.", ["service"], registry=registry
        )
        self.evictions = Counter(
            "fleetwatch_evictions",
            "Instances removed because their lease expired.",
            ["service"],
            registry=registry,
        )
        self.transitions = Counter(
            "fleetwatch_status_transitions",
            "Status changes, by the status entered.",
            ["service", "to"],
            registry=registry,
        )
        self.propagation = Histogram(
            "fleetwatch_change_propagation_seconds",
            "From a change being stored to this node seeing it on the change feed.",
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.discovery = Histogram(
            "fleetwatch_discovery_request_duration_seconds",
            "Time to answer a discovery read (blocking queries excluded).",
            ["endpoint"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.slo_objective = Gauge(
            "fleetwatch_slo_objective_ratio",
            "The availability objective.",
            ["service"],
            registry=registry,
        )
        self.slo_availability = Gauge(
            "fleetwatch_slo_availability_ratio",
            "Share of the window with at least min_available instances available.",
            ["service"],
            registry=registry,
        )
        self.slo_capacity = Gauge(
            "fleetwatch_slo_capacity_ratio",
            "Available over desired instances, averaged over the window.",
            ["service"],
            registry=registry,
        )
        self.slo_requests = Gauge(
            "fleetwatch_slo_request_success_ratio",
            "Share of gateway requests over the window that succeeded.",
            ["service"],
            registry=registry,
        )
        self.slo_latency = Gauge(
            "fleetwatch_slo_latency_within_threshold_ratio",
            "Share of gateway requests whose first token came within the latency threshold.",
            ["service"],
            registry=registry,
        )
        self.slo_budget = Gauge(
            "fleetwatch_slo_error_budget_remaining_ratio",
            "Share of the window's error budget not yet spent.",
            ["service"],
            registry=registry,
        )
        self.slo_burn = Gauge(
            "fleetwatch_slo_burn_rate",
            "Error budget burn rate over a recent window (1 = exactly on budget).",
            ["service", "window"],
            registry=registry,
        )
        self.slo_alert = Gauge(
            "fleetwatch_slo_burn_alert",
            "1 while a multi-window burn-rate alert fires (fast: 14.4 over 1h and 5m; slow: 6 "
            "over 6h and 30m).",
            ["service", "severity"],
            registry=registry,
        )
        self.self_preservation = Gauge(
            "fleetwatch_self_preservation",
            "1 while the monitor holds back evictions (it lost sight of too many instances).",
            registry=registry,
        )
        self.tasks = Gauge(
            "fleetwatch_asyncio_tasks",
            "asyncio tasks alive in the node, by kind (watch: one per watched instance; "
            "other: unnamed, such as requests being served).",
            ["kind"],
            registry=registry,
        )

    def set_slos(self, reports: Iterable[SloReport]) -> None:
        """Each objective's SLIs, budget, burn rates and alerts."""
        for gauge in (
            self.slo_availability,
            self.slo_capacity,
            self.slo_budget,
            self.slo_burn,
            self.slo_alert,
            self.slo_requests,
            self.slo_latency,
            self.slo_objective,
        ):
            gauge.clear()
        for report in reports:
            service = report.service
            self.slo_objective.labels(service).set(report.objective)
            if report.availability is not None:
                self.slo_availability.labels(service).set(report.availability)
            if report.capacity is not None:
                self.slo_capacity.labels(service).set(report.capacity)
            if report.budget_remaining is not None:
                self.slo_budget.labels(service).set(report.budget_remaining)
            for window, rate in report.burn_rates.items():
                if rate is not None:
                    self.slo_burn.labels(service, window).set(rate)
            if report.request_success is not None:
                self.slo_requests.labels(service).set(report.request_success)
            if report.latency_within_threshold is not None:
                self.slo_latency.labels(service).set(report.latency_within_threshold)
            self.slo_alert.labels(service, "fast").set(1.0 if report.fast_burn else 0.0)
            self.slo_alert.labels(service, "slow").set(1.0 if report.slow_burn else 0.0)

    def observe_event(self, event: Event, now: float) -> None:
        """Count one change from the change feed."""
        if event.is_notice:
            return
        match event.type:
            case EventType.REGISTERED:
                self.registrations.labels(event.service).inc()
            case EventType.DEREGISTERED:
                self.deregistrations.labels(event.service).inc()
            case EventType.EVICTED:
                self.evictions.labels(event.service).inc()
            case EventType.STATUS_CHANGED if event.instance is not None:
                self.transitions.labels(event.service, event.instance.status.value).inc()
            case _:
                pass
        self.propagation.observe(max(0.0, now - event.at))

    def set_instances(self, counts: Mapping[str, Mapping[str, int]]) -> None:
        """Instances by service and status (every status, zeros included)."""
        self.instances.clear()
        for service, by_status in counts.items():
            for status in InstanceStatus:
                self.instances.labels(service, status.value).set(by_status.get(status.value, 0))


class GatewayMetrics:
    """Requests through the gateway; for LLM traffic, first token, inter-token and tokens/s."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "fleetwatch_gateway_requests",
            "Requests by service and outcome (ok, upstream_5xx, saturated, ...).",
            ["service", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "fleetwatch_gateway_request_duration_seconds",
            "Request duration through the gateway, to the last byte.",
            ["service"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.first_token = Histogram(
            "fleetwatch_gateway_time_to_first_token_seconds",
            "From the request to the first byte of the reply (the first token when streamed).",
            ["service", "model"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.inter_token = Histogram(
            "fleetwatch_gateway_inter_token_latency_seconds",
            "Mean time between streamed chunks of one reply.",
            ["service", "model"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.tokens_per_second = Histogram(
            "fleetwatch_gateway_tokens_per_second",
            "Streamed chunks per second after the first, per reply.",
            ["service", "model"],
            buckets=(1, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=registry,
        )
        self.retries = Counter(
            "fleetwatch_gateway_retries",
            "Requests sent to another instance before any byte reached the client.",
            ["service"],
            registry=registry,
        )
        self.recoveries = Counter(
            "fleetwatch_gateway_stream_recoveries",
            "Streams whose server broke after the first byte, by what became of them: "
            "recovered (continued on another instance), not_recoverable, failed.",
            ["service", "result"],
            registry=registry,
        )
        self.seam = Histogram(
            "fleetwatch_gateway_stream_seam_seconds",
            "From a stream's break to the continuation's first text reaching the client.",
            ["service"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "fleetwatch_gateway_tokens",
            "Tokens of the replies, as the servers counted them: prompt, of which cached "
            "(served from the server's prompt cache), and completion.",
            ["service", "model", "kind"],
            registry=registry,
        )
        self.prefix_blocks = Counter(
            "fleetwatch_gateway_prefix_blocks",
            "Prompt blocks the prefix scorer looked up at the instance it chose, by whether "
            "it expected them cached there (hit) or not (miss).",
            ["service", "result"],
            registry=registry,
        )
        self.ejections = Counter(
            "fleetwatch_outlier_ejections",
            "Instances ejected by passive outlier detection.",
            ["service"],
            registry=registry,
        )
        self._circuits: Callable[[], Mapping[str, Mapping[str, Any]]] = dict
        registry.register(_StateCollector(self._circuit_states))

    def watch_circuits(self, snapshot: Callable[[], Mapping[str, Mapping[str, Any]]]) -> None:
        """Where circuit states are read at scrape time."""
        self._circuits = snapshot
        self._ejections_seen: dict[str, int] = {}

    def count_ejections(self) -> None:
        """Add the ejections circuits made since the last scrape (circuits are forgotten when
        their instance leaves, so the counter keeps its own running total)."""
        for key, state in self._circuits().items():
            now = int(state.get("ejections", 0))
            before = self._ejections_seen.get(key, 0)
            if now > before:
                self.ejections.labels(key.split("/", 1)[0]).inc(now - before)
            self._ejections_seen[key] = now

    def _circuit_states(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "fleetwatch_circuit_open",
            "1 while an instance's circuit is open (ejected), 0 otherwise.",
            labels=["instance"],
        )
        for key, state in self._circuits().items():
            family.add_metric([key], 1.0 if state.get("state") == "open" else 0.0)
        yield family

    def streamed(
        self, service: str, model: str, *, first: float | None, chunks: int, total: float
    ) -> None:
        """Figures of one streamed reply."""
        if first is None:
            return
        self.first_token.labels(service, model).observe(first)
        if chunks > 1 and total > first:
            self.inter_token.labels(service, model).observe((total - first) / (chunks - 1))
            self.tokens_per_second.labels(service, model).observe((chunks - 1) / (total - first))


class AgentMetrics:
    """The agent's view of its server: load, probe spending, reported status."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        load: Callable[[], Mapping[str, float]],
        account: Callable[[], Mapping[str, int]],
        status: Callable[[], str | None],
    ) -> None:
        self._load, self._account, self._status = load, account, status
        self.started = time.time()
        registry.register(_StateCollector(self._families))

    def _families(self) -> Iterable[Metric]:
        load = GaugeMetricFamily(
            "fleetwatch_llm_load",
            "The server's own load figures (waiting, running, kv_cache_usage, busy_slots, ...).",
            labels=["figure"],
        )
        for figure, value in sorted(self._load().items()):
            load.add_metric([figure], value)
        yield load
        account = self._account()
        spent = CounterMetricFamily(
            "fleetwatch_llm_probe_tokens",
            "Tokens generation probes have spent (prompt and completion) since the agent started.",
        )
        spent.add_metric([], float(account.get("probe_tokens_total", 0)))
        yield spent
        probes = CounterMetricFamily(
            "fleetwatch_llm_probes", "Generation probes run and skipped.", labels=["outcome"]
        )
        probes.add_metric(["run"], float(account.get("probes_run", 0)))
        probes.add_metric(["skipped"], float(account.get("probes_skipped", 0)))
        yield probes
        status = GaugeMetricFamily(
            "fleetwatch_instance_reported_status",
            "1 for the status the agent last reported, 0 for the others.",
            labels=["status"],
        )
        current = self._status()
        for each in InstanceStatus:
            status.add_metric([each.value], 1.0 if each.value == current else 0.0)
        yield status
