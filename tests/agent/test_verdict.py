"""The agent's verdict from its two check states, case by case."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from fleetwatch.agent._verdict import instance_status
from fleetwatch.health import CheckSettings, HealthStatus
from fleetwatch.health._result import CheckResult
from fleetwatch.health._scheduler import CheckState
from fleetwatch.llm._check import GENERATE_CHECK, READY_CHECK
from fleetwatch.registry._model import InstanceStatus as I

H, D, U, K = (
    HealthStatus.HEALTHY,
    HealthStatus.DEGRADED,
    HealthStatus.UNHEALTHY,
    HealthStatus.UNKNOWN,
)


def _state(name: str, status: HealthStatus | None, phase: str = "ready") -> CheckState:
    """A check state whose last result has ``status`` (None: no result yet)."""
    result = None
    if status is not None:
        metadata: dict[str, Any] = {"phase": phase} if name == READY_CHECK else {}
        result = CheckResult(
            name, status, f"{name} {status.value}", 0.01, datetime.now(UTC), metadata=metadata
        )
    return CheckState(None, CheckSettings(name), status or K, result, 1 if result else 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ready", "phase", "generate", "ever_available", "expected"),
    [
        (None, "ready", None, False, I.STARTING),  # nothing read yet
        (U, "loading", None, False, I.STARTING),  # the model is loading
        (U, "loading", None, True, I.UNAVAILABLE),  # loading again after serving: a restart
        (U, "dead", None, False, I.UNAVAILABLE),
        (H, "ready", None, False, I.STARTING),  # loaded, first probe not answered yet
        (H, "ready", K, False, I.STARTING),  # loaded, the probe has said nothing yet
        (H, "ready", H, False, I.AVAILABLE),  # the first probe passed
        (H, "ready", D, False, I.DEGRADED),
        (H, "ready", U, False, I.UNAVAILABLE),  # loaded but cannot generate: never routable
        (H, "ready", K, True, I.AVAILABLE),  # after serving, no probe yet: readiness decides
        (U, "ready", H, True, I.UNAVAILABLE),  # readiness failing wins over an old probe
    ],
)
def test_verdict(
    ready: HealthStatus | None,
    phase: str,
    generate: HealthStatus | None,
    ever_available: bool,
    expected: I,
) -> None:
    """Each combination of readiness, generation and history gives the documented status."""
    states = {
        READY_CHECK: _state(READY_CHECK, ready, phase),
        GENERATE_CHECK: _state(GENERATE_CHECK, generate),
    }
    status, output = instance_status(states, ever_available=ever_available)
    assert status is expected
    assert output


def test_without_a_generation_check_readiness_decides() -> None:
    """No generation check at all: ready is available from the first reading."""
    states = {READY_CHECK: _state(READY_CHECK, H)}
    assert instance_status(states, ever_available=False)[0] is I.AVAILABLE
