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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetwatch.config.registry import SloSection
from fleetwatch.errors import RegistryError
from fleetwatch.registry.model import InstanceStatus
from fleetwatch.registry.store import RegistryStore

log = logging.getLogger("fleetwatch.slo")
#: Burn-rate windows, seconds.
BURN_WINDOWS = {"5m": 300, "30m": 1800, "1h": 3600, "6h": 21600}
FAST_BURN, SLOW_BURN = 14.4, 6.0
TRIM_EVERY_S = 3600.0


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
            "alerts": {"fast_burn": self.fast_burn, "slow_burn": self.slow_burn},
        }


class SloTracker:
    """Samples every objective's SLIs and reports on them."""

    def __init__(
        self,
        store: RegistryStore,
        objectives: Sequence[SloSection],
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
                service, minute, good, self.sample_every, share * self.sample_every
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

    async def reports(self) -> list[SloReport]:
        """Every objective, judged now."""
        return [await self.report(service) for service in sorted(self.objectives)]

    async def report(self, service: str) -> SloReport:
        objective = self.objectives[service]
        now = self._clock()
        minutes = await self.store.sli_minutes(service, int((now - objective.window) // 60))
        good, total, capacity = (sum(b[i] for b in minutes.values()) for i in range(3))
        budget = 1.0 - objective.objective
        availability = good / total if total else None
        budget_remaining = (
            max(0.0, 1.0 - (1.0 - availability) / budget) if availability is not None else None
        )
        rates: dict[str, float | None] = {}
        for name, seconds in BURN_WINDOWS.items():
            since = int((now - seconds) // 60)
            recent = [b for m, b in minutes.items() if m >= since]
            g, t = sum(b[0] for b in recent), sum(b[1] for b in recent)
            rates[name] = round((1.0 - g / t) / budget, 3) if t else None

        def over(a: str, b: str, threshold: float) -> bool:
            first, second = rates[a], rates[b]
            return first is not None and second is not None and min(first, second) > threshold

        return SloReport(
            service=service,
            objective=objective.objective,
            window_s=objective.window,
            availability=None if availability is None else round(availability, 6),
            capacity=round(capacity / total, 6) if total and objective.desired else None,
            capacity_objective=objective.capacity_objective,
            budget_remaining=None if budget_remaining is None else round(budget_remaining, 6),
            burn_rates=rates,
            fast_burn=over("1h", "5m", FAST_BURN),
            slow_burn=over("6h", "30m", SLOW_BURN),
            observed_s=total,
        )
