"""What the router knows of each instance's load: its own requests in flight and their latency
(counted as requests start and end), and what the servers last reported."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

Key = tuple[str, str]
#: Weight of the newest latency sample in the moving average (about the last ten requests).
EWMA_ALPHA = 0.3


@dataclass
class LoadStats:
    """What a client knows of each instance from its own requests: in flight, latency EWMA."""

    outstanding: dict[Key, int] = field(default_factory=dict)
    latency_ewma: dict[Key, float] = field(default_factory=dict)

    def begin(self, key: Key) -> None:
        """A request started."""
        self.outstanding[key] = self.outstanding.get(key, 0) + 1

    def end(self, key: Key, latency_s: float | None) -> None:
        """A request ended (``latency_s`` None when it failed before an answer)."""
        self.outstanding[key] = max(0, self.outstanding.get(key, 0) - 1)
        if latency_s is not None:
            old = self.latency_ewma.get(key)
            self.latency_ewma[key] = (
                latency_s if old is None else EWMA_ALPHA * latency_s + (1 - EWMA_ALPHA) * old
            )


@dataclass(frozen=True)
class Signals:
    """The load signals scorers read: ``stats`` (this client's) and ``reported`` (the
    servers' own figures, from the registry's load channel; read-only here)."""

    stats: LoadStats = field(default_factory=LoadStats)
    #: Empty: no reports, each instance's load is what this client sent it.
    reported: Mapping[Key, Mapping[str, float]] = field(default_factory=dict)

    def load(self, key: Key) -> float:
        """Queue first, then work in hand, then memory pressure as a tie-breaker, plus this
        client's requests in flight (current, where the reports lag by up to an interval)."""
        figures = self.reported.get(key, {})
        running = figures.get("running", figures.get("busy_slots", 0.0))
        return (
            2.0 * figures.get("waiting", 0.0)
            + running
            + figures.get("kv_cache_usage", 0.0)
            + self.stats.outstanding.get(key, 0)
        )

    def requests(self, key: Key) -> float:
        """How many requests the instance holds: waiting plus running as it reported them, or
        this client's in flight when that is more (the report lags, or there is none). Not
        their sum: a server's report counts this client's requests too."""
        figures = self.reported.get(key, {})
        running = figures.get("running", figures.get("busy_slots", 0.0))
        return max(figures.get("waiting", 0.0) + running, self.stats.outstanding.get(key, 0))
