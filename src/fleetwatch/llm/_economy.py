"""Token economy: probe only without recent passive evidence, rarely, and within a budget.

A generation probe costs tokens. It is skipped while the server shows it is generating on its
own (its generated-token counter rising, or requests fleetwatch saw succeed), it runs at most
once per ``min_interval``, and a per-instance hourly budget caps what probes may spend, however
the rest is configured. Every token spent is counted.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

HOUR_S = 3600.0
DEFAULT_MIN_INTERVAL_S = 120.0
DEFAULT_EVIDENCE_WINDOW_S = 30.0
DEFAULT_HOURLY_BUDGET = 2000


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to probe now, and why (for the check's output)."""

    probe: bool
    reason: str


class ProbeGovernor:
    """Decides when a generation probe may run, and keeps the account."""

    def __init__(
        self,
        *,
        min_interval: float = DEFAULT_MIN_INTERVAL_S,
        evidence_window: float = DEFAULT_EVIDENCE_WINDOW_S,
        hourly_budget: int = DEFAULT_HOURLY_BUDGET,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_interval < 0 or evidence_window < 0 or hourly_budget < 0:
            raise ValueError("probe interval, evidence window and budget must be >= 0")
        self.min_interval = min_interval
        self.evidence_window = evidence_window
        self.hourly_budget = hourly_budget
        self._clock = clock
        self._spent: deque[tuple[float, int]] = deque()
        self._last_probe_at: float | None = None
        self._last_evidence_at: float | None = None
        self._last_counter: float | None = None
        #: Tokens our own probes generated since the counter was last read.
        self._own_since_reading = 0
        self.tokens_spent_total = 0
        self.probes_run = 0
        self.probes_skipped = 0

    def note_generated_counter(self, value: float | None) -> None:
        """The server's own generated-token counter; a rise beyond our probes is evidence."""
        if value is None:
            return
        previous, self._last_counter = self._last_counter, value
        own, self._own_since_reading = self._own_since_reading, 0
        if previous is not None and value - previous > own:
            self._last_evidence_at = self._clock()

    def note_success(self) -> None:
        """A real request fleetwatch saw succeed (a gateway, a client's report)."""
        self._last_evidence_at = self._clock()

    def spent_last_hour(self) -> int:
        """Tokens probes spent in the last hour."""
        horizon = self._clock() - HOUR_S
        while self._spent and self._spent[0][0] <= horizon:
            self._spent.popleft()
        return sum(tokens for _, tokens in self._spent)

    def account(self) -> dict[str, int]:
        """The figures fleetwatch exports about probe spending."""
        return {
            "probe_tokens_total": self.tokens_spent_total,
            "probe_tokens_last_hour": self.spent_last_hour(),
            "probes_run": self.probes_run,
            "probes_skipped": self.probes_skipped,
        }

    def decide(self, cost_estimate: int) -> Decision:
        """Probe now? Skips are counted."""
        now = self._clock()
        decision = self._decide(now, cost_estimate)
        if not decision.probe:
            self.probes_skipped += 1
        return decision

    def _decide(self, now: float, cost_estimate: int) -> Decision:
        if (
            self._last_evidence_at is not None
            and now - self._last_evidence_at <= self.evidence_window
        ):
            ago = now - self._last_evidence_at
            return Decision(False, f"server generated {ago:.0f}s ago (passive evidence)")
        if self._last_probe_at is not None and now - self._last_probe_at < self.min_interval:
            ago = now - self._last_probe_at
            return Decision(False, f"last probe {ago:.0f}s ago (every {self.min_interval:g}s)")
        spent = self.spent_last_hour()
        if spent + cost_estimate > self.hourly_budget:
            return Decision(False, f"hourly token budget reached ({spent}/{self.hourly_budget})")
        return Decision(True, "no recent evidence of generation")

    def record_probe(self, tokens: int, generated: int = 0) -> None:
        """A probe ran, spending ``tokens`` in all (prompt included) and generating
        ``generated``; the counter's rise by those is not taken for traffic."""
        now = self._clock()
        self._last_probe_at = now
        self.probes_run += 1
        self.tokens_spent_total += tokens
        self._spent.append((now, tokens))
        self._own_since_reading += generated
