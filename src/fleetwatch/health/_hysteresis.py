"""Rise/fall hysteresis: a status changes only after enough results agree."""

from __future__ import annotations

from dataclasses import dataclass

from fleetwatch.health._status import HealthStatus


@dataclass(slots=True)
class Hysteresis:
    """Turns raw results into a status that does not flap.

    The first result is taken as it is (there is nothing to be stable against yet). After that,
    moving from failing to passing takes ``rise`` consecutive passing results and moving from
    passing to failing takes ``fall`` consecutive failing ones; healthy and degraded are both
    passing, so a check moves between them at once.
    """

    rise: int
    fall: int
    status: HealthStatus = HealthStatus.UNKNOWN
    streak: int = 0
    seen: bool = False

    def update(self, raw: HealthStatus) -> HealthStatus:
        """Feed one raw result; return the status to report.

        A raw ``unknown`` (a check that could not tell) counts as failing, like unhealthy.
        """
        if not self.seen or raw.passing == self.status.passing:
            self.seen = True
            self.status = raw
            self.streak = 0
            return self.status
        self.streak += 1
        if self.streak >= (self.rise if raw.passing else self.fall):
            self.status = raw
            self.streak = 0
        return self.status

    @property
    def pending(self) -> str | None:
        """A short note while a change is building up, e.g. ``"failing 1/3"``."""
        if not self.streak:
            return None
        if self.status.passing:
            return f"failing {self.streak}/{self.fall}"
        return f"recovering {self.streak}/{self.rise}"
