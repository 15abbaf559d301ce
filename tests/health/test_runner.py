"""The check runner: timeouts, exceptions, measurements and custom checks."""

from __future__ import annotations

import asyncio

import pytest

from fleetwatch.health import (
    CheckSettings,
    HealthProbes,
    HealthScheduler,
    HealthStatus,
    Observation,
    run_check,
)


class Sleepy:
    """A custom check that sleeps, then passes."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def check(self) -> Observation:
        await asyncio.sleep(self.seconds)
        return Observation(HealthStatus.HEALTHY, "slept")


class Broken:
    """A custom check that raises."""

    async def check(self) -> Observation:
        raise ConnectionResetError("peer went away")


class QueueDepth:
    """A custom check reporting its own measurement."""

    component_type = "queue"
    measurement = "depth"

    async def check(self) -> Observation:
        return Observation(HealthStatus.DEGRADED, "deep", 42, "items", {"queue": "jobs"})


async def test_timeout_yields_unhealthy_naming_it() -> None:
    """A check past its timeout is cut off and reported unhealthy with the limit."""
    result = await run_check(Sleepy(5), CheckSettings("slow", timeout=0.05))
    assert result.status is HealthStatus.UNHEALTHY
    assert result.output == "TimeoutError: timed out after 0.05s"
    assert result.metadata["error_type"] == "TimeoutError"
    assert 0.04 < result.duration_s < 1.0


async def test_exception_yields_unhealthy_naming_the_type() -> None:
    """An exception never escapes: the result names its type and message."""
    result = await run_check(Broken(), CheckSettings("broken"))
    assert result.status is HealthStatus.UNHEALTHY
    assert result.output == "ConnectionResetError: peer went away"
    assert result.metadata["error_type"] == "ConnectionResetError"


async def test_cancellation_propagates() -> None:
    """Cancelling the runner cancels the check instead of being swallowed as a failure."""
    task = asyncio.create_task(run_check(Sleepy(5), CheckSettings("slow", timeout=10)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_duration_is_the_default_observed_value() -> None:
    """Without its own measurement a result reports its duration in ms."""
    result = await run_check(Sleepy(0.02), CheckSettings("nap"))
    assert result.status is HealthStatus.HEALTHY
    assert result.observed_unit == "ms"
    assert isinstance(result.observed_value, float)
    assert result.observed_value >= 20
    assert result.timestamp.tzinfo is not None


async def test_custom_check_keeps_its_measurement() -> None:
    """A user's check keeps its value, unit, metadata; its attributes name its health+json entry."""
    check = QueueDepth()
    result = await run_check(check, CheckSettings("jobs"))
    assert (result.status, result.observed_value, result.observed_unit) == (
        HealthStatus.DEGRADED,
        42,
        "items",
    )
    assert result.metadata == {"queue": "jobs"}
    scheduler = HealthScheduler([(check, CheckSettings("jobs"))])
    await scheduler.run_all()
    document = HealthProbes(scheduler).document(None, verbose=True)[1]
    assert list(document["checks"]) == ["jobs:depth"]
    entry = document["checks"]["jobs:depth"][0]
    assert (entry["componentId"], entry["componentType"]) == ("jobs", "queue")
    assert (entry["observedValue"], entry["observedUnit"]) == (42, "items")
    assert entry["metadata"] == {"queue": "jobs"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("interval", 0), ("timeout", -1), ("rise", 0), ("fall", 0), ("weight", -0.5)],
)
def test_settings_reject_nonsense(field: str, value: float) -> None:
    """Non-positive intervals, timeouts, thresholds and negative weights are refused."""
    with pytest.raises(ValueError, match=field):
        CheckSettings("x", **{field: value})  # type: ignore[arg-type]


def test_settings_reject_bad_names() -> None:
    """Check names must be short and URL-safe (they appear in /health/<check>)."""
    with pytest.raises(ValueError, match="invalid"):
        CheckSettings("has space")


class ReturnsDict:
    """A custom check that forgets to return an Observation."""

    async def check(self) -> Observation:
        return {"status": "ok"}  # type: ignore[return-value]


class CancelsItself:
    """A custom check whose library cancels its own work."""

    async def check(self) -> Observation:
        raise asyncio.CancelledError


async def test_wrong_return_type_is_a_failure_not_an_escape() -> None:
    """A check returning something other than an Observation is unhealthy, naming the type."""
    result = await run_check(ReturnsDict(), CheckSettings("typo"))
    assert result.status is HealthStatus.UNHEALTHY
    assert result.output == "TypeError: check() returned dict, not an Observation"


async def test_check_cancelling_itself_is_a_failure() -> None:
    """A CancelledError raised inside the check (not by our caller) is reported, not propagated."""
    result = await run_check(CancelsItself(), CheckSettings("self-cancel"))
    assert result.status is HealthStatus.UNHEALTHY
    assert result.output.startswith("CancelledError")


def test_settings_reject_infinity() -> None:
    """An infinite timeout or weight is refused: every limit must be finite."""
    with pytest.raises(ValueError, match="finite"):
        CheckSettings("x", timeout=float("inf"))
    with pytest.raises(ValueError, match="finite"):
        CheckSettings("x", weight=float("inf"))
