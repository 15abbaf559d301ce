"""``[[alerts]]`` and ``[[notifiers]]`` in the ``fleetwatch serve`` configuration.

```toml
[[notifiers]]
name = "ops"
type = "webhook"                # or "log"
url = "http://alerts.internal/hook"
timeout = "2s"
retries = 3                     # after the first try; backoff doubles from 0.5 s
group_wait = "2s"               # alerts of one rule within this window go in one POST
repeat_interval = "4h"          # a still-firing alert is sent again after this long
flap_window = "1m"              # a resolution waits this long; firing again meanwhile is
                                # the same incident (a flapping instance pages once)

[[alerts]]
name = "instance-unavailable"
kind = "instance_status"        # an instance in one of `statuses` for `for`
service = "llm"                 # default: every service
statuses = ["unavailable"]
for = "30s"
notify = ["ops"]                # default: every notifier

[[alerts]]
name = "llm-capacity"
kind = "service_capacity"       # fewer than `below` routable instances for `for`
service = "llm"
below = 2
for = "10s"

[[alerts]]
name = "llm-budget-burn"
kind = "slo_burn"               # a [[slos]] objective's burn-rate alert
service = "llm"
severity = "fast"               # fast (14.4x over 1h and 5m) or slow (6x over 6h and 30m)
```
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from fleetwatch.alerts._rules import AlertRule, NotifierSettings
from fleetwatch.config._durations import parse_duration

Duration = Annotated[float, BeforeValidator(parse_duration)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]
Status = Literal["available", "degraded", "unavailable", "maintenance", "draining", "starting"]


class NotifierSection(BaseModel):
    """``[[notifiers]]``: where alerts go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    type: Literal["log", "webhook"]
    url: str | None = None
    timeout: Duration = 2.0
    retries: Annotated[int, Field(ge=0, le=10)] = 3
    group_wait: Duration = 2.0
    repeat_interval: Duration = 4 * 3600.0
    flap_window: Duration = 60.0

    @model_validator(mode="after")
    def _url(self) -> NotifierSection:
        if self.type == "webhook":
            if not self.url or not self.url.startswith(("http://", "https://")):
                raise ValueError(f"a webhook needs an http(s) url, got {self.url!r}")
        elif self.url is not None:
            raise ValueError("url goes with type = 'webhook'")
        return self

    def as_settings(self) -> NotifierSettings:
        """As the notifiers take it."""
        return NotifierSettings(**self.model_dump())


def _unavailable() -> list[Status]:
    return ["unavailable"]


class AlertSection(BaseModel):
    """``[[alerts]]``: what to match, how long it must hold, where to send it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: Name
    kind: Literal["instance_status", "service_capacity", "slo_burn"]
    service: Name | None = None
    statuses: list[Status] = Field(default_factory=_unavailable)
    below: Annotated[int, Field(ge=1)] | None = None
    severity: Literal["fast", "slow"] = "fast"
    for_: Annotated[Duration, Field(alias="for")] = 0.0
    notify: list[Name] | None = None

    @model_validator(mode="after")
    def _fields_for_kind(self) -> AlertSection:
        if self.kind == "service_capacity" and self.below is None:
            raise ValueError("a service_capacity alert needs `below` (routable instances)")
        if self.kind != "service_capacity" and self.below is not None:
            raise ValueError("`below` goes with kind = 'service_capacity'")
        if self.kind == "slo_burn" and self.service is None:
            raise ValueError("an slo_burn alert names the `service` of an [[slos]] objective")
        return self

    def as_rule(self) -> AlertRule:
        """As the alert engine takes it."""
        return AlertRule(
            name=self.name,
            kind=self.kind,
            service=self.service,
            statuses=frozenset(self.statuses),
            below=self.below,
            severity=self.severity,
            for_=self.for_,
            notify=tuple(self.notify) if self.notify is not None else None,
        )
