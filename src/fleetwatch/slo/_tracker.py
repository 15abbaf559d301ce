"""Sampling SLIs every second into per-minute buckets in the store, and judging them.

Every ``sample_every`` seconds the tracker counts each objective's service's ``available``
instances and adds one sample to the current minute's bucket: a *good* second when at least
``min_available`` were available, and ``min(1, available / desired)`` of capacity. Buckets live
in the registry's store, so with Redis the history survives a restart and is shared by every
node (only the first node, by id, samples, so seconds are not counted twice).

From the buckets: the SLIs over the objective's window, the error budget left
(``1 - bad share / (1 - objective)``), and burn rates over 5 min, 30 min, 1 h and 6 h (bad
share over the window divided by the budget's share). Alerts follow the multi-window,
multi-burn-rate rule of Google's SRE workbook: *fast* when both the 1 h and 5 min burn rates
exceed 14.4 (2 % of a 30-day budget in an hour), *slow* when both 6 h and 30 min exceed 6.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from fleetwatch.errors import RegistryError
from fleetwatch.registry._model import InstanceStatus
from fleetwatch.registry._store import RegistryStore
from fleetwatch.slo._objective import SloObjective

log = logging.getLogger("fleetwatch.slo")
#: Burn-rate windows, seconds.
BURN_WINDOWS = {"5m": 300, "30m": 1800, "1h": 3600, "6h": 21600}
FAST_BURN, SLOW_BURN = 14.4, 6.0
TRIM_EVERY_S = 3600.0
REPORT_REUSE_S = 2.0


@dataclass(frozen=True, slots=True)
class SloReport:
    """One objective, judged now."""

    service: str
    objective: float
    window_s: float
    availability: float | None
    capacity: float | None
    capacity_objective: float | None
    budget_remaining: float | None
    burn_rates: dict[str, float | None] = field(default_factory=dict)
    fast_burn: bool = False
    slow_burn: bool = False
    observed_s: float = 0.0
    requests: int = 0
    request_success: float | None = None
    request_objective: float | None = None
    latency_within_threshold: float | None = None
    latency_objective: float | None = None
    latency_threshold_s: float | None = None
    request_burn_rates: dict[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "objective": self.objective,
            "window_s": self.window_s,
            "observed_s": self.observed_s,
            "availability": self.availability,
            "capacity": self.capacity,
            "capacity_objective": self.capacity_objective,
            "error_budget_remaining": self.budget_remaining,
            "burn_rates": self.burn_rates,
            "requests": self.requests,
            "request_success": self.request_success,
            "request_objective": self.request_objective,
            "latency_within_threshold": self.latency_within_threshold,
            "latency_objective": self.latency_objective,
            "latency_threshold_s": self.latency_threshold_s,
            "request_burn_rates": self.request_burn_rates,
            "alerts": {"fast_burn": self.fast_burn, "slow_burn": self.slow_burn},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SloReport:
        """The inverse of :meth:`as_dict` (what ``GET /v1/slo`` answers, one entry)."""
        alerts = data.get("alerts") or {}
        known = {f.name for f in fields(cls)} - {"budget_remaining", "fast_burn", "slow_burn"}
        return cls(
            **{k: v for k, v in data.items() if k in known},
            budget_remaining=data.get("error_budget_remaining"),
            fast_burn=bool(alerts.get("fast_burn")),
            slow_burn=bool(alerts.get("slow_burn")),
        )


class SloTracker:
    """Samples every objective's SLIs and reports on them."""

    def __init__(
        self,
        store: RegistryStore,
        objectives: Sequence[SloObjective],
        *,
        sample_every: float = 1.0,
        clock: Callable[[], float] = time.time,
        is_sampler: Callable[[], bool] = lambda: True,
    ) -> None:
        self.store = store
        self.objectives = {o.service: o for o in objectives}
        self.sample_every = sample_every
        self._clock = clock
        self._is_sampler = is_sampler
        self._trimmed_at = 0.0
        self._reports: tuple[float, list[SloReport]] | None = None

    async def sample(self) -> None:
        """Add one sample for every objective (the caller decides how often)."""
        if not self.objectives or not self._is_sampler():
            return
        now = self._clock()
        minute = int(now // 60)
        available: dict[str, int] = {}
        for instance in await self.store.instances():
            if instance.status is InstanceStatus.AVAILABLE:
                available[instance.service] = available.get(instance.service, 0) + 1
        for service, objective in self.objectives.items():
            up = available.get(service, 0)
            good = self.sample_every if up >= objective.min_available else 0.0
            share = min(1.0, up / objective.desired) if objective.desired else 0.0
            await self.store.add_sli(
                service,
                minute,
                {"good": good, "total": self.sample_every, "capacity": share * self.sample_every},
            )
        if now - self._trimmed_at > TRIM_EVERY_S:
            self._trimmed_at = now
            for service, objective in self.objectives.items():
                await self.store.trim_sli(service, int((now - objective.window) // 60) - 1)

    async def run(self) -> None:
        """Sample forever (a task the node owns and cancels)."""
        while True:
            with contextlib.suppress(RegistryError):
                await self.sample()
            await asyncio.sleep(self.sample_every)

    async def add_requests(self, service: str, total: int, ok: int, fast: int) -> None:
        """Requests a gateway saw for ``service``: all, succeeded, first byte in time."""
        if service not in self.objectives:
            raise KeyError(service)
        minute = int(self._clock() // 60)
        await self.store.add_sli(
            service, minute, {"req_total": total, "req_ok": ok, "req_fast": fast}
        )

    async def reports(self) -> list[SloReport]:
        """Every objective, judged now (reused for ``REPORT_REUSE_S``: the API, a metrics
        scrape and the alert evaluator each second would otherwise re-read the whole history)."""
        now = self._clock()
        if self._reports is None or now - self._reports[0] >= REPORT_REUSE_S:
            self._reports = (now, [await self.report(s) for s in sorted(self.objectives)])
        return self._reports[1]

    async def report(self, service: str) -> SloReport:
        objective = self.objectives[service]
        now = self._clock()
        minutes = await self.store.sli_minutes(service, int((now - objective.window) // 60))

        def total(name: str, since: int | None = None) -> float:
            return sum(b.get(name, 0.0) for m, b in minutes.items() if since is None or m >= since)

        budget = 1.0 - objective.objective
        seconds = total("total")
        availability = total("good") / seconds if seconds else None
        budget_remaining = (
            max(0.0, 1.0 - (1.0 - availability) / budget) if availability is not None else None
        )
        requests = total("req_total")
        rates: dict[str, float | None] = {}
        request_rates: dict[str, float | None] = {}
        request_budget = 1.0 - (objective.request_objective or objective.objective)
        for name, window in BURN_WINDOWS.items():
            since = int((now - window) // 60)
            t, r = total("total", since), total("req_total", since)
            rates[name] = round((1.0 - total("good", since) / t) / budget, 3) if t else None
            request_rates[name] = (
                round((1.0 - total("req_ok", since) / r) / request_budget, 3) if r else None
            )

        def over(source: dict[str, float | None], a: str, b: str, threshold: float) -> bool:
            first, second = source[a], source[b]
            return first is not None and second is not None and min(first, second) > threshold

        def burning(a: str, b: str, threshold: float) -> bool:
            watched = objective.request_objective is not None
            return over(rates, a, b, threshold) or (
                watched and over(request_rates, a, b, threshold)
            )

        return SloReport(
            service=service,
            objective=objective.objective,
            window_s=objective.window,
            availability=None if availability is None else round(availability, 6),
            capacity=round(total("capacity") / seconds, 6)
            if seconds and objective.desired
            else None,
            capacity_objective=objective.capacity_objective,
            budget_remaining=None if budget_remaining is None else round(budget_remaining, 6),
            burn_rates=rates,
            fast_burn=burning("1h", "5m", FAST_BURN),
            slow_burn=burning("6h", "30m", SLOW_BURN),
            observed_s=seconds,
            requests=int(requests),
            request_success=round(total("req_ok") / requests, 6) if requests else None,
            request_objective=objective.request_objective,
            latency_within_threshold=round(total("req_fast") / requests, 6) if requests else None,
            latency_objective=objective.latency_objective,
            latency_threshold_s=objective.latency_threshold,
            request_burn_rates=request_rates,
        )
