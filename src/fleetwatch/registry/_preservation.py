"""Self-preservation: when many instances fail at once, suspect the registry, not the fleet.

A registry cut off from half its fleet sees timeouts from every instance it cannot reach, and
would evict them all, sending every client to the other half. Eureka calls the defence
self-preservation: when more than a share of a large enough fleet fails together, hold off.
Only failures that could be the monitor's own fault count: a refused connection is an answer
from the instance's host (nothing listens on that port any more), so it never engages this mode.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("fleetwatch.registry")


@dataclass(frozen=True, slots=True)
class PreservationPolicy:
    """At least ``share`` of at least ``minimum`` instances failing together engages it.

    "At least": a monitor cut off from exactly half its fleet (one of two racks, one of two
    zones) is the typical partition, and must not evict that half.
    """

    share: float = 0.5
    minimum: int = 5

    def __post_init__(self) -> None:
        if not 0 < self.share < 1:
            raise ValueError(f"self-preservation share must be in (0, 1), got {self.share}")
        if self.minimum < 1:
            raise ValueError(f"self-preservation minimum must be >= 1, got {self.minimum}")

    def suspicious(self, failing: int, total: int) -> bool:
        """Whether ``failing`` of ``total`` looks like the registry's own trouble."""
        return total >= self.minimum and failing >= self.share * total


class SelfPreservation:
    """Tracks which watched instances are failing in a way the monitor could cause."""

    def __init__(
        self,
        policy: PreservationPolicy | None = None,
        on_change: Callable[[bool, str], None] | None = None,
    ) -> None:
        self.policy = policy or PreservationPolicy()
        self._on_change = on_change or (lambda engaged, reason: None)
        self._failing: set[tuple[str, str]] = set()
        self._watched = 0
        self.engaged_since: float | None = None
        self.engagements = 0

    @property
    def engaged(self) -> bool:
        """Whether evictions and failure transitions are being held back."""
        return self.engaged_since is not None

    def watched(self, count: int) -> None:
        """How many instances the monitor watches now."""
        self._watched = count
        self._update()

    def observe(self, key: tuple[str, str], *, failing: bool) -> None:
        """Record one instance's latest probe: failing in a way we may cause, or not."""
        if failing:
            self._failing.add(key)
        else:
            self._failing.discard(key)
        self._update()

    def forget(self, key: tuple[str, str]) -> None:
        """An instance is no longer watched."""
        self._failing.discard(key)

    def _update(self) -> None:
        suspicious = self.policy.suspicious(len(self._failing), self._watched)
        if suspicious and self.engaged_since is None:
            self.engaged_since = time.time()
            self.engagements += 1
            reason = (
                f"{len(self._failing)} of {self._watched} instances failing at once; holding "
                "their status instead of marking them unavailable"
            )
            log.warning("registry.self_preservation_engaged: %s", reason)
            self._on_change(True, reason)
        elif not suspicious and self.engaged_since is not None:
            reason = (
                f"after {time.time() - self.engaged_since:.1f}s: {len(self._failing)} of "
                f"{self._watched} failing"
            )
            log.warning("registry.self_preservation_released %s", reason)
            self.engaged_since = None
            self._on_change(False, reason)

    def snapshot(self) -> dict[str, object]:
        """For the API: engaged or not, since when, how many failing of how many."""
        return {
            "engaged": self.engaged,
            "engaged_since": self.engaged_since,
            "engagements": self.engagements,
            "failing": len(self._failing),
            "watched": self._watched,
        }


class LapsedLeases:
    """The same rule for leases: when too many lapse together, suspect the registry.

    A registry cut off from its agents sees their leases lapse over a heartbeat period, not in
    one reaper tick, so evictions for a lapse within ``window`` seconds count together with
    what lapses now. While that looks like the registry's own trouble (:class:`PreservationPolicy`,
    as for probe failures), nothing is evicted for a lapse.
    """

    def __init__(self, policy: PreservationPolicy, window: float) -> None:
        self.policy = policy
        self.window = window
        self._evicted_at: deque[float] = deque()
        self.engaged = False
        #: Reaper ticks that held evictions back.
        self.holds = 0

    def hold(self, lapsed: int, total: int) -> bool:
        """Whether ``lapsed`` of ``total`` leases lapsing now must not be evicted."""
        horizon = time.monotonic() - self.window
        while self._evicted_at and self._evicted_at[0] < horizon:
            self._evicted_at.popleft()
        recent = len(self._evicted_at)
        held = lapsed > 0 and self.policy.suspicious(lapsed + recent, total + recent)
        if held:
            self.holds += 1
        return held

    def evicted(self) -> None:
        """One instance was evicted for a lapsed lease just now."""
        self._evicted_at.append(time.monotonic())
