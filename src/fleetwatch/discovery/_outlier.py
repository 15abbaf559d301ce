"""Passive outlier ejection: a circuit breaker per instance, fed by real requests.

Active checks run every second or so; requests run all the time. A client that sees an instance
fail its requests stops sending it work at once, without waiting for the registry: after
``consecutive_failures`` failures (Envoy's default is 5 consecutive 5xx), or one connect error
(nothing listens), the instance's circuit opens for a backoff period (exponential, capped,
jittered); then one trial request half-opens it, and its outcome closes or re-opens the circuit.
Never more than ``max_ejected_share`` of a service is ejected; and when too few instances look
healthy, all are used (Envoy's panic threshold): a partial outage must not become a total one.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

T = TypeVar("T")
Key = tuple[str, str]


class CircuitState(StrEnum):
    """Closed: traffic flows. Open: ejected. Half-open: one trial request allowed."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class OutlierPolicy:
    """When to eject and for how long. Defaults: Envoy's 5 failures and 50% panic threshold."""

    consecutive_failures: int = 5
    base_ejection_s: float = 1.0
    max_ejection_s: float = 30.0
    max_ejected_share: float = 0.5
    panic_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.consecutive_failures < 1:
            raise ValueError("consecutive_failures must be >= 1")
        if not 0 < self.base_ejection_s <= self.max_ejection_s:
            raise ValueError("need 0 < base_ejection_s <= max_ejection_s")
        for name in ("max_ejected_share", "panic_threshold"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")


@dataclass(slots=True)
class _Breaker:
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    ejections: int = 0
    open_until: float = 0.0
    trial_in_flight: bool = False


@dataclass
class OutlierDetector:
    """Circuit state for every instance a client talks to."""

    policy: OutlierPolicy = field(default_factory=OutlierPolicy)
    clock: Callable[[], float] = time.monotonic
    _breakers: dict[Key, _Breaker] = field(default_factory=dict)
    #: The circuits not closed (open or half-open): none, on almost every request.
    _tripped: set[Key] = field(default_factory=set)

    def state(self, key: Key) -> CircuitState:
        """The circuit's state now (an open circuit whose time is up reads half-open)."""
        breaker = self._breakers.get(key)
        if breaker is None:
            return CircuitState.CLOSED
        if breaker.state is CircuitState.OPEN and self.clock() >= breaker.open_until:
            breaker.state = CircuitState.HALF_OPEN
            breaker.trial_in_flight = False
        return breaker.state

    def allows(self, key: Key) -> bool:
        """Whether a request may go to this instance now."""
        state = self.state(key)
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN:
            return not self._breakers[key].trial_in_flight
        return False

    def started(self, key: Key) -> None:
        """A request is being sent; in half-open state it is the one trial."""
        if self.state(key) is CircuitState.HALF_OPEN:
            self._breakers[key].trial_in_flight = True

    def succeeded(self, key: Key) -> None:
        """A request succeeded: close the circuit (an open one only through its trial: a
        request sent before the ejection says nothing about now)."""
        breaker = self._breakers.get(key)
        if breaker is not None and self.state(key) is not CircuitState.OPEN:
            breaker.state = CircuitState.CLOSED
            self._tripped.discard(key)
            breaker.failures = 0
            breaker.trial_in_flight = False
            breaker.ejections = max(0, breaker.ejections - 1)

    def failed(self, key: Key, *, connect_error: bool = False, peers: int = 1) -> None:
        """A request failed (5xx, reset, timeout; ``connect_error``: refused). ``peers`` is how
        many instances the service has, to respect the maximum ejected share."""
        breaker = self._breakers.setdefault(key, _Breaker())
        breaker.failures += 1
        state = self.state(key)
        trip = state is CircuitState.HALF_OPEN or connect_error
        trip = trip or breaker.failures >= self.policy.consecutive_failures
        if not trip or state is CircuitState.OPEN:
            return
        if (
            state is CircuitState.CLOSED
            and self._ejected(key[0]) + 1 > self.policy.max_ejected_share * peers
        ):
            return  # ejecting one more would leave too few
        breaker.ejections += 1
        backoff = min(
            self.policy.base_ejection_s * 2 ** (breaker.ejections - 1), self.policy.max_ejection_s
        )
        breaker.open_until = self.clock() + backoff * random.uniform(0.9, 1.1)
        breaker.state = CircuitState.OPEN
        self._tripped.add(key)
        breaker.trial_in_flight = False

    def _ejected(self, service: str) -> int:
        """How many of ``service``'s instances are ejected now (the cap is per service)."""
        return sum(
            1
            for key in self._breakers
            if key[0] == service and self.state(key) is not CircuitState.CLOSED
        )

    def forget(self, key: Key) -> None:
        """The instance is gone."""
        self._breakers.pop(key, None)
        self._tripped.discard(key)

    def routable(self, candidates: Sequence[T], key: Callable[[T], Key]) -> tuple[list[T], bool]:
        """The candidates a request may go to, and whether panic mode is on.

        In panic (fewer than ``panic_threshold`` of the candidates allowed), all are used.
        """
        if not self._tripped:
            return list(candidates), False  # the usual case, on every request: all closed
        allowed = [c for c in candidates if self.allows(key(c))]
        if candidates and len(allowed) < self.policy.panic_threshold * len(candidates):
            return list(candidates), True
        return allowed, False

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Every known circuit, for observability."""
        return {
            f"{k[0]}/{k[1]}": {
                "state": self.state(k).value,
                "failures": b.failures,
                "ejections": b.ejections,
            }
            for k, b in self._breakers.items()
        }
