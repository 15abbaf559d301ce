"""An objective, as the SLO tracker takes it: a plain frozen value (``[[slos]]`` in the
configuration is validated by ``fleetwatch.config`` and turned into one)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SloObjective:
    """A service's availability, capacity and request objectives, over ``window`` seconds."""

    service: str
    #: Share of time with at least ``min_available`` available instances, e.g. 0.999.
    objective: float = 0.999
    window: float = 30 * 86400.0
    min_available: int = 1
    #: Capacity SLI: available over desired instances (one of ten up is not "available").
    desired: int | None = None
    capacity_objective: float | None = None
    #: Request SLIs, from what gateways report: share of requests that succeeded...
    request_objective: float | None = None
    #: ...and share whose first byte (first token) came within ``latency_threshold`` seconds.
    latency_objective: float | None = None
    latency_threshold: float = 2.0
