"""The check protocol, per-check settings, and the runner that never lets a check escape."""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from fleetwatch._cancellation import keep_cancellation
from fleetwatch.health._result import CheckResult, Observation
from fleetwatch.health._status import HealthStatus

#: Check names appear in URLs (``/health/<name>``) and metric labels: short and URL-safe.
CHECK_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
_NAME = re.compile(CHECK_NAME_PATTERN)


class Group(StrEnum):
    """Probe groups, as Kubernetes and Spring Boot name them."""

    LIVENESS = "liveness"
    READINESS = "readiness"
    STARTUP = "startup"


#: Where a dependency check belongs unless told otherwise. Liveness is left out on purpose:
#: a process whose database is down is not helped by being restarted (Kubernetes and Spring
#: Boot guidance), so liveness never depends on external systems by default.
DEPENDENCY_GROUPS: frozenset[Group] = frozenset({Group.READINESS, Group.STARTUP})


@runtime_checkable
class HealthCheck(Protocol):
    """A health check: anything with an async ``check()`` returning an :class:`Observation`.

    Implement this for your own dependencies and hand it to the same scheduler, aggregation and
    endpoints as the built-ins. Optional attributes the runner and renderer read:

    - ``component_type`` (health+json ``componentType``, e.g. ``"datastore"``),
    - ``measurement`` (the ``component:measurement`` key's second half, e.g. ``"responseTime"``),
    - ``async def aclose()``, called once when the scheduler closes, to free resources.

    ``check()`` may raise: the runner turns any exception or a timeout into an ``unhealthy``
    result naming the error type.
    """

    async def check(self) -> Observation:
        """Look at the dependency once and say what was seen."""
        ...


@dataclass(frozen=True, slots=True)
class CheckSettings:
    """How a check is scheduled and weighed.

    Defaults: a 5 s timeout; a 10 s interval, the Kubernetes probe period; rise 2 and
    fall 3, HAProxy's defaults, so one lost packet neither takes a dependency out of rotation
    nor does one lucky answer put a dead one back.
    """

    name: str
    interval: float = 10.0
    timeout: float = 5.0
    critical: bool = False
    weight: float = 1.0
    groups: frozenset[Group] = DEPENDENCY_GROUPS
    rise: int = 2
    fall: int = 3

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"check name {self.name!r} is invalid: use 1-63 letters, digits, '_', '.' or "
                "'-', starting with a letter or digit"
            )
        for field_name in ("interval", "timeout"):
            value = getattr(self, field_name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(
                    f"check {self.name!r}: {field_name} must be a finite number > 0, got {value}"
                )
        if not (self.weight >= 0 and math.isfinite(self.weight)):
            raise ValueError(
                f"check {self.name!r}: weight must be a finite number >= 0, got {self.weight}"
            )
        for field_name in ("rise", "fall"):
            value = getattr(self, field_name)
            if value < 1:
                raise ValueError(f"check {self.name!r}: {field_name} must be >= 1, got {value}")


def component_type(check: HealthCheck) -> str:
    """The health+json componentType of a check (``"component"`` when it does not say)."""
    return str(getattr(check, "component_type", "component"))


def measurement(check: HealthCheck) -> str:
    """The measurement half of the check's ``component:measurement`` key."""
    return str(getattr(check, "measurement", "responseTime"))


def _failure(error_type: str, message: str) -> Observation:
    return Observation(
        HealthStatus.UNHEALTHY, f"{error_type}: {message}", metadata={"error_type": error_type}
    )


async def _observe(check: HealthCheck, limit_s: float) -> Observation:
    """One ``check()`` call within ``limit_s`` seconds, every failure turned into an observation."""
    task = asyncio.current_task()
    cancelling = task.cancelling() if task else 0
    try:
        async with asyncio.timeout(limit_s) as deadline:
            with keep_cancellation():  # a library (redis-py) may lose our cancel on 3.11
                observation = await check.check()
    except TimeoutError as exc:
        if deadline.expired():
            return _failure("TimeoutError", f"timed out after {limit_s:g}s")
        return _failure("TimeoutError", str(exc) or "the check timed out")
    except asyncio.CancelledError:
        if task is not None and task.cancelling() > cancelling:
            raise  # we are being cancelled: let it through
        # The check cancelled itself (e.g. a library cancelling its own work): a failure.
        return _failure("CancelledError", "the check was cancelled from inside")
    except Exception as exc:  # a check must never escape the runner
        return _failure(type(exc).__name__, str(exc) or "(no message)")
    if not isinstance(observation, Observation):
        return _failure(
            "TypeError", f"check() returned {type(observation).__name__}, not an Observation"
        )
    return observation


async def run_check(check: HealthCheck, settings: CheckSettings) -> CheckResult:
    """Run ``check`` once under its timeout. Never raises, except for cancellation.

    A timeout, an exception, or a return value that is not an :class:`Observation` yields an
    ``unhealthy`` result whose output starts with the error type, so one broken check cannot
    take down the scheduler or an endpoint.
    """
    started = time.perf_counter()
    observation = await _observe(check, settings.timeout)
    duration = time.perf_counter() - started
    value, unit = observation.observed_value, observation.observed_unit
    if value is None:
        value, unit = round(duration * 1000.0, 3), "ms"
    return CheckResult(
        name=settings.name,
        status=observation.status,
        output=observation.output,
        duration_s=duration,
        timestamp=datetime.now(UTC),
        observed_value=value,
        observed_unit=unit,
        metadata=observation.metadata,
        details=observation.details,
    )
