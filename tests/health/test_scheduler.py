"""The background scheduler: intervals, freshness, isolation and clean shutdown."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from fleetwatch.health import CheckSettings, HealthScheduler, HealthStatus, Observation
from tests._support.waiting import wait_for_state


class Counting:
    """Counts its executions; optionally sleeps a varying time and can be told to fail."""

    def __init__(self, sleeps: tuple[float, ...] = (0.0,)) -> None:
        self.calls = 0
        self.closed = False
        self.failing = False
        self._sleeps = sleeps

    async def check(self) -> Observation:
        self.calls += 1
        await asyncio.sleep(self._sleeps[self.calls % len(self._sleeps)])
        if self.failing:
            raise RuntimeError("told to fail")
        return Observation(HealthStatus.HEALTHY, "ok")

    async def aclose(self) -> None:
        self.closed = True


async def test_checks_run_on_their_own_interval() -> None:
    """Each check runs about once per interval (jitter only shortens the wait)."""
    fast, slow = Counting(), Counting()
    scheduler = HealthScheduler(
        [(fast, CheckSettings("fast", interval=0.1)), (slow, CheckSettings("slow", interval=0.5))]
    )
    started = time.monotonic()
    async with scheduler:
        await asyncio.sleep(1.02)
    elapsed = time.monotonic() - started
    # Waits are interval x [0.9, 1]; allow one late wake-up on a loaded machine.
    assert elapsed / 0.1 - 1 <= fast.calls <= elapsed / 0.09 + 1
    assert elapsed / 0.5 - 1 <= slow.calls <= elapsed / 0.45 + 1


async def test_results_never_older_than_interval_plus_timeout() -> None:
    """Sampled continuously, the latest result's age stays within interval + timeout."""
    check = Counting(sleeps=(0.0, 0.08, 0.15, 0.5))  # the last one runs past the timeout
    settings = CheckSettings("varying", interval=0.1, timeout=0.2)
    async with HealthScheduler([(check, settings)]) as scheduler:
        await wait_for_state(scheduler, "varying", lambda s: s.result is not None, within=2)
        worst = 0.0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            result = scheduler.states()["varying"].result
            assert result is not None
            worst = max(worst, (datetime.now(UTC) - result.timestamp).total_seconds())
            await asyncio.sleep(0.005)
    assert worst <= settings.interval + settings.timeout + 0.05


async def test_failing_check_keeps_running_and_others_are_unaffected() -> None:
    """A check that raises stays scheduled and does not disturb its neighbours."""
    bad, good = Counting(), Counting()
    bad.failing = True
    settings = [CheckSettings("bad", interval=0.05, fall=1), CheckSettings("good", interval=0.05)]
    async with HealthScheduler(zip([bad, good], settings, strict=True)) as scheduler:
        await asyncio.sleep(0.3)
        states = scheduler.states()
    assert bad.calls >= 4
    assert states["bad"].status is HealthStatus.UNHEALTHY
    assert states["bad"].result is not None
    assert "RuntimeError: told to fail" in states["bad"].result.output
    assert states["good"].status is HealthStatus.HEALTHY


async def test_close_cancels_loops_and_closes_checks() -> None:
    """Leaving the context cancels every loop and calls each check's aclose()."""
    check = Counting()
    async with HealthScheduler([(check, CheckSettings("c", interval=0.01))]):
        await asyncio.sleep(0.05)
    calls = check.calls
    await asyncio.sleep(0.05)
    assert check.closed
    assert check.calls == calls
    leftover = [
        t for t in asyncio.all_tasks() if t.get_name().startswith("fleetwatch.health.check")
    ]
    assert leftover == []


async def test_run_all_runs_each_check_once() -> None:
    """run_all executes every check exactly once, in parallel or in order."""
    checks = [Counting(sleeps=(0.1,)) for _ in range(3)]
    scheduler = HealthScheduler((c, CheckSettings(f"c{i}")) for i, c in enumerate(checks))
    started = time.perf_counter()
    await scheduler.run_all(parallel=True)
    parallel_time = time.perf_counter() - started
    started = time.perf_counter()
    await scheduler.run_all(parallel=False)
    sequential_time = time.perf_counter() - started
    assert [c.calls for c in checks] == [2, 2, 2]
    assert parallel_time < 0.25 <= sequential_time


def test_duplicate_names_are_refused() -> None:
    """Two checks may not share a name."""
    scheduler = HealthScheduler([(Counting(), CheckSettings("x"))])
    with pytest.raises(ValueError, match="already registered"):
        scheduler.add(Counting(), CheckSettings("x"))


async def test_wait_for_change_wakes_on_a_new_result() -> None:
    """wait_for_change returns once a result newer than the given revision exists."""
    async with HealthScheduler([(Counting(), CheckSettings("c", interval=0.05))]) as scheduler:
        revision = scheduler.revision
        async with asyncio.timeout(1):
            newer = await scheduler.wait_for_change(revision)
    assert newer > revision


async def test_status_changes_are_remembered_as_transitions() -> None:
    """Each stable status change is recorded with the check, both statuses and the output."""
    check = Counting()
    scheduler = HealthScheduler([(check, CheckSettings("c", fall=1, rise=1))])
    await scheduler.run_all()
    check.failing = True
    await scheduler.run_all()
    await scheduler.run_all()
    check.failing = False
    await scheduler.run_all()
    changes = [(t.check, t.before, t.after) for t in scheduler.transitions]
    assert changes == [
        ("c", HealthStatus.UNKNOWN, HealthStatus.HEALTHY),
        ("c", HealthStatus.HEALTHY, HealthStatus.UNHEALTHY),
        ("c", HealthStatus.UNHEALTHY, HealthStatus.HEALTHY),
    ]
    assert "told to fail" in scheduler.transitions[1].output


async def test_result_older_than_interval_plus_timeout_reads_stale() -> None:
    """If a check's loop stops producing results, the check turns unhealthy and says stale."""
    check = Counting()
    settings = CheckSettings("c", interval=0.1, timeout=0.1)
    scheduler = HealthScheduler([(check, settings)])
    await scheduler.run_all()
    assert scheduler.states()["c"].status is HealthStatus.HEALTHY
    await asyncio.sleep(settings.interval + settings.timeout + 1.05)  # nothing runs meanwhile
    state = scheduler.states()["c"]
    assert state.status is HealthStatus.UNHEALTHY
    assert state.stale_for_s is not None
    assert state.stale_for_s > 1.2


async def test_run_all_is_refused_while_loops_run() -> None:
    """A one-shot run beside the background loops would run a check twice at once."""
    async with HealthScheduler([(Counting(), CheckSettings("c"))]) as scheduler:
        with pytest.raises(RuntimeError, match="not running its loops"):
            await scheduler.run_all()
