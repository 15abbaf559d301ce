"""What the alert engine and its notifiers are told: plain frozen values.

The ``[[alerts]]`` and ``[[notifiers]]`` tables are validated by ``fleetwatch.config`` and
turned into these (pydantic stays at the edges), so code that builds an engine by hand
needs no configuration file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AlertKind = Literal["instance_status", "service_capacity", "slo_burn"]


@dataclass(frozen=True, slots=True)
class AlertRule:
    """What to match, how long it must hold (``for_`` seconds), and where to send it."""

    name: str
    kind: AlertKind
    service: str | None = None
    #: For ``instance_status``: the statuses that fire.
    statuses: frozenset[str] = frozenset({"unavailable"})
    #: For ``service_capacity``: fire below this many routable instances.
    below: int | None = None
    #: For ``slo_burn``: the fast or the slow burn-rate alert.
    severity: Literal["fast", "slow"] = "fast"
    for_: float = 0.0
    #: Notifier names; None sends to every notifier.
    notify: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class NotifierSettings:
    """Where alerts go (a log line, or a webhook), and how they are grouped and repeated."""

    name: str
    type: Literal["log", "webhook"]
    url: str | None = None
    timeout: float = 2.0
    retries: int = 3
    group_wait: float = 2.0
    repeat_interval: float = 4 * 3600.0
    flap_window: float = 60.0
