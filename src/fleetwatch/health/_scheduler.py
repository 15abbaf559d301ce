"""Runs checks in the background on their own schedule and keeps the latest results.

Endpoints read results from here; they never run a check themselves. A flood of probe requests
therefore costs no extra check executions (a design that runs every check on every
``/health`` request pays for an LLM generation each time).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from fleetwatch._supervisor import Supervisor
from fleetwatch.health._check import CheckSettings, HealthCheck, run_check
from fleetwatch.health._hysteresis import Hysteresis
from fleetwatch.health._result import CheckResult
from fleetwatch.health._status import HealthStatus

log = logging.getLogger("fleetwatch.health")

#: Each wait is shortened by up to this share of the interval, so checks that started together
#: drift apart (no synchronised bursts against a shared dependency). Jitter only shortens the
#: wait, which keeps the promise that a result is never older than interval + timeout.
DEFAULT_JITTER = 0.1


#: A result older than interval + timeout + this slack means the check's loop has stopped
#: producing results (or the process is starved); the check then reads as unhealthy.
STALE_SLACK_S = 1.0

#: How many recent status transitions a scheduler remembers for displays and diagnostics.
TRANSITION_HISTORY = 50


@dataclass(frozen=True, slots=True)
class Transition:
    """A check's stable status changed."""

    at: datetime
    check: str
    before: HealthStatus
    after: HealthStatus
    output: str


@dataclass(frozen=True, slots=True)
class CheckState:
    """What the endpoints read for one check: its settings, last raw result and stable status."""

    check: HealthCheck
    settings: CheckSettings
    status: HealthStatus
    result: CheckResult | None
    executions: int
    pending: str | None = None
    stale_for_s: float | None = None


class _Entry:
    __slots__ = ("check", "executions", "hysteresis", "result", "settings")

    def __init__(self, check: HealthCheck, settings: CheckSettings) -> None:
        self.check = check
        self.settings = settings
        self.hysteresis = Hysteresis(settings.rise, settings.fall)
        self.result: CheckResult | None = None
        self.executions = 0

    def state(self, now: datetime) -> CheckState:
        status, stale_for = self.hysteresis.status, None
        if self.result is not None:
            age = (now - self.result.timestamp).total_seconds()
            if age > self.settings.interval + self.settings.timeout + STALE_SLACK_S:
                status, stale_for = HealthStatus.UNHEALTHY, round(age, 3)
        return CheckState(
            self.check,
            self.settings,
            status,
            self.result,
            self.executions,
            self.hysteresis.pending,
            stale_for,
        )


class HealthScheduler:
    """Owns a set of checks, runs each on its interval with jitter, and keeps their states.

    Use it as an async context manager: entering starts one background task per check, leaving
    cancels them and closes every check that has an ``aclose()``. ``run_all()`` runs every check
    once, now, without the background loop (what ``fleetwatch check`` does).
    """

    def __init__(
        self,
        checks: Iterable[tuple[HealthCheck, CheckSettings]] = (),
        *,
        jitter: float = DEFAULT_JITTER,
    ) -> None:
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self._jitter = jitter
        self._entries: dict[str, _Entry] = {}
        #: One loop per check; a crash (a bug: run_check itself never raises) is logged,
        #: counted and the loop restarted, so a check never goes quietly stale.
        self.loops = Supervisor("health")
        self._started = False
        self._changed = asyncio.Event()
        #: Called with every result (metrics observe durations here); must not block.
        self.listeners: list[Callable[[CheckResult], None]] = []
        self.revision = 0
        self.transitions: deque[Transition] = deque(maxlen=TRANSITION_HISTORY)
        for check, settings in checks:
            self.add(check, settings)

    def add(self, check: HealthCheck, settings: CheckSettings) -> None:
        """Register a check (built-in or your own). Names must be unique."""
        if settings.name in self._entries:
            raise ValueError(f"a check named {settings.name!r} is already registered")
        if self._started:
            raise RuntimeError("add checks before the scheduler starts")
        self._entries[settings.name] = _Entry(check, settings)

    @property
    def names(self) -> list[str]:
        """Check names in registration order."""
        return list(self._entries)

    @property
    def executions(self) -> int:
        """Total check executions so far, all checks together."""
        return sum(entry.executions for entry in self._entries.values())

    def states(self) -> dict[str, CheckState]:
        """A snapshot of every check's state, keyed by name, in registration order.

        A check whose latest result is older than its interval + timeout (+ slack) reads as
        unhealthy with ``stale_for_s`` set: results are never served past their freshness.
        """
        now = datetime.now(UTC)
        return {name: entry.state(now) for name, entry in self._entries.items()}

    def state(self, name: str) -> CheckState | None:
        """One check's state, or ``None`` if no check has that name."""
        entry = self._entries.get(name)
        return entry.state(datetime.now(UTC)) if entry else None

    async def run_all(self, *, parallel: bool = True) -> Mapping[str, CheckState]:
        """Run every check once now (in parallel by default) and return the new states.

        For one-shot use: while the background loops run, a second execution of the same check
        would race with them, so that is refused.
        """
        if self._started:
            raise RuntimeError("run_all() is for a scheduler that is not running its loops")
        entries = list(self._entries.values())
        if parallel:
            await asyncio.gather(*(self._execute(entry) for entry in entries))
        else:
            for entry in entries:
                await self._execute(entry)
        return self.states()

    async def wait_for_change(self, since: int | None = None) -> int:
        """Wait until a result newer than revision ``since`` (default: now) is recorded.

        Returns the new revision. Bound the wait with ``asyncio.timeout``.
        """
        since = self.revision if since is None else since
        while self.revision <= since:
            await self._changed.wait()
        return self.revision

    async def __aenter__(self) -> HealthScheduler:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def start(self) -> None:
        """Start one background loop per check."""
        if self._started:
            raise RuntimeError("the scheduler is already running")
        self._started = True
        for name, entry in self._entries.items():
            self.loops.start(f"check.{name}", functools.partial(self._loop, entry))

    async def aclose(self) -> None:
        """Cancel the loops, wait for them, and close every check that can be closed."""
        await self.loops.aclose()
        self._started = False
        for entry in self._entries.values():
            close = getattr(entry.check, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:
                    log.exception("health.check_close_failed", extra={"check": entry.settings.name})

    async def _loop(self, entry: _Entry) -> None:
        # run_check never raises except for cancellation; should the loop crash anyway, the
        # supervisor logs and counts it and runs the loop again.
        # The loop's clock, not time.monotonic(): the same on a real loop, and a benchmark can
        # run the schedule under a virtual clock.
        loop = asyncio.get_running_loop()
        interval = entry.settings.interval
        while True:
            started = loop.time()
            await self._execute(entry)
            wait = interval * (1.0 - random.uniform(0.0, self._jitter))
            await asyncio.sleep(max(0.0, started + wait - loop.time()))

    async def _execute(self, entry: _Entry) -> None:
        result = await run_check(entry.check, entry.settings)
        for listener in self.listeners:
            listener(result)
        before = entry.hysteresis.status
        after = entry.hysteresis.update(result.status)
        entry.result = result
        entry.executions += 1
        self.revision += 1
        # Wake every waiter of this revision, and give later waiters a fresh event.
        self._changed.set()
        self._changed = asyncio.Event()
        if after is not before:
            self.transitions.append(
                Transition(result.timestamp, entry.settings.name, before, after, result.output)
            )
            log.info(
                "health.check_status_changed %s: %s -> %s (%s)",
                entry.settings.name,
                before.value,
                after.value,
                result.output,
                extra={"check": entry.settings.name, "from": before.value, "to": after.value},
            )
