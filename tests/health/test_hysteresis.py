"""Rise/fall hysteresis and the status model."""

from __future__ import annotations

import pytest

from fleetwatch.health import HealthStatus, Hysteresis

H, D, U, K = (
    HealthStatus.HEALTHY,
    HealthStatus.DEGRADED,
    HealthStatus.UNHEALTHY,
    HealthStatus.UNKNOWN,
)


def test_status_maps_to_health_json() -> None:
    """healthy/degraded/unhealthy/unknown map to pass/warn/fail/fail."""
    assert [s.health_json for s in (H, D, U, K)] == ["pass", "warn", "fail", "fail"]


def test_first_result_is_taken_as_is() -> None:
    """With no history, the first raw result becomes the status at once."""
    assert Hysteresis(rise=2, fall=3).update(U) is U
    assert Hysteresis(rise=2, fall=3).update(H) is H


def test_fall_failures_needed_to_turn_unhealthy() -> None:
    """A healthy check turns unhealthy only after `fall` consecutive failures."""
    h = Hysteresis(rise=2, fall=3)
    h.update(H)
    assert [h.update(U) for _ in range(3)] == [H, H, U]


def test_rise_successes_needed_to_recover() -> None:
    """An unhealthy check turns healthy only after `rise` consecutive successes."""
    h = Hysteresis(rise=2, fall=3)
    h.update(U)
    assert h.update(H) is U
    assert h.pending == "recovering 1/2"
    assert h.update(H) is H
    assert h.pending is None


def test_interrupted_streak_starts_over() -> None:
    """A success between failures resets the count towards `fall`."""
    h = Hysteresis(rise=1, fall=2)
    h.update(H)
    assert [h.update(U), h.update(H), h.update(U), h.update(U)] == [H, H, H, U]


def test_healthy_and_degraded_switch_at_once() -> None:
    """Both are passing, so moving between them needs no streak."""
    h = Hysteresis(rise=5, fall=5)
    h.update(H)
    assert h.update(D) is D
    assert h.update(H) is H


@pytest.mark.parametrize("fall", [2, 3, 4])
def test_flapping_never_reaches_fall(fall: int) -> None:
    """Alternating results never flip a check whose fall threshold is above one."""
    h = Hysteresis(rise=2, fall=fall)
    h.update(H)
    seen = {h.update(U if i % 2 == 0 else H) for i in range(20)}
    assert seen == {H}


def test_unknown_counts_as_failing_and_recovery_still_needs_rise() -> None:
    """A raw unknown is failing: from unknown, healthy again takes `rise` results."""
    h = Hysteresis(rise=3, fall=1)
    h.update(U)
    assert h.update(K) is K
    assert [h.update(H) for _ in range(3)] == [K, K, H]
