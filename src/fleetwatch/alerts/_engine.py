"""Evaluating alert rules against the registry, with pending (``for``), firing and resolved.

Every evaluation builds the set of conditions that hold now, one per (rule, subject): an
instance in a watched status, a service short of routable instances, an SLO burning fast. A
condition must hold for the rule's ``for`` before it fires; when it stops holding, a firing
alert resolves. Transitions are handed to the rule's notifiers, which group and de-duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fleetwatch.alerts._notifiers import Notifier
from fleetwatch.alerts._rules import AlertRule
from fleetwatch.errors import RegistryError
from fleetwatch.registry._model import Instance
from fleetwatch.slo._tracker import SloReport

log = logging.getLogger("fleetwatch.alerts")
State = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert transition, as notifiers send it."""

    rule: str
    state: State
    subject: str
    summary: str
    since: float
    at: float

    @property
    def key(self) -> tuple[str, str]:
        return self.rule, self.subject

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "state": self.state,
            "subject": self.subject,
            "summary": self.summary,
            "since": self.since,
            "at": self.at,
        }


class AlertEngine:
    """Rules, their pending and firing conditions, and where transitions go."""

    def __init__(
        self,
        rules: Sequence[AlertRule],
        notifiers: Mapping[str, Notifier],
        *,
        instances: Callable[[], Awaitable[list[Instance]]],
        slos: Callable[[], Awaitable[list[SloReport]]],
        clock: Callable[[], float] = time.time,
        is_evaluator: Callable[[], bool] = lambda: True,
    ) -> None:
        self.rules = list(rules)
        self.notifiers = dict(notifiers)
        self._instances = instances
        self._slos = slos
        self._clock = clock
        self._is_evaluator = is_evaluator
        self.pending: dict[tuple[str, str], tuple[float, str]] = {}
        self.firing: dict[tuple[str, str], tuple[float, str]] = {}

    async def evaluate(self) -> list[Alert]:
        """One evaluation; the transitions it produced (already handed to notifiers)."""
        if not self.rules or not self._is_evaluator():
            return []
        now = self._clock()
        holding = await self._conditions()
        transitions: list[Alert] = []
        for key, summary in holding.items():
            since = self.pending.setdefault(key, (now, summary))[0]
            rule = self._rule(key[0])
            if key not in self.firing and now - since >= rule.for_:
                self.firing[key] = (since, summary)
                transitions.append(Alert(key[0], "firing", key[1], summary, since, now))
        for key in [k for k in self.pending if k not in holding]:
            del self.pending[key]
            if key in self.firing:
                since, summary = self.firing.pop(key)
                transitions.append(Alert(key[0], "resolved", key[1], summary, since, now))
        for alert in transitions:
            log.info("alert.%s %s %s: %s", alert.state, alert.rule, alert.subject, alert.summary)
            for notifier in self._targets(self._rule(alert.rule)):
                notifier.submit(alert)
        for notifier in self.notifiers.values():
            notifier.tick()
        return transitions

    async def run(self, every: float = 1.0) -> None:
        """Evaluate forever (a task the node owns and cancels)."""
        while True:
            with contextlib.suppress(RegistryError):
                await self.evaluate()
            await asyncio.sleep(every)

    def _rule(self, name: str) -> AlertRule:
        return next(r for r in self.rules if r.name == name)

    def _targets(self, rule: AlertRule) -> list[Notifier]:
        names = rule.notify if rule.notify is not None else list(self.notifiers)
        return [self.notifiers[n] for n in names if n in self.notifiers]

    async def _conditions(self) -> dict[tuple[str, str], str]:
        instances = await self._instances()
        reports: list[SloReport] | None = None
        holding: dict[tuple[str, str], str] = {}
        for rule in self.rules:
            wanted = [i for i in instances if rule.service in (None, i.service)]
            if rule.kind == "instance_status":
                for i in wanted:
                    if i.status.value in rule.statuses:
                        holding[(rule.name, f"{i.service}/{i.instance_id}")] = (
                            f"{i.service}/{i.instance_id} is {i.status.value}: "
                            f"{i.last_check_output or 'no check output'}"
                        )
            elif rule.kind == "service_capacity":
                assert rule.below is not None
                services = {rule.service} if rule.service else {i.service for i in instances}
                for service in services:
                    up = sum(1 for i in wanted if i.service == service and i.status.routable)
                    if up < rule.below:
                        holding[(rule.name, service)] = (
                            f"{service} has {up} routable instance(s), fewer than {rule.below}"
                        )
            else:
                reports = reports if reports is not None else await self._slos()
                for report in reports:
                    burning = report.fast_burn if rule.severity == "fast" else report.slow_burn
                    if report.service == rule.service and burning:
                        holding[(rule.name, report.service)] = (
                            f"{report.service} burns its error budget {rule.severity}: "
                            f"{report.burn_rates}"
                        )
        return holding
