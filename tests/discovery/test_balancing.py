"""Balancing strategies and passive outlier ejection, as pure logic."""

from __future__ import annotations

from collections import Counter

import pytest

from fleetwatch.discovery import (
    CircuitState,
    LoadStats,
    OutlierDetector,
    OutlierPolicy,
    balancer_for,
)
from fleetwatch.registry._model import Instance, InstanceStatus


def _fleet(*statuses: InstanceStatus) -> list[Instance]:
    return [
        Instance(service="llm", instance_id=f"i{n}", host="127.0.0.1", port=8000 + n, status=s)
        for n, s in enumerate(statuses)
    ]


AVAILABLE, DEGRADED = InstanceStatus.AVAILABLE, InstanceStatus.DEGRADED


def test_round_robin_cycles() -> None:
    """Round-robin visits each instance in turn."""
    fleet = _fleet(AVAILABLE, AVAILABLE, AVAILABLE)
    picker = balancer_for("round-robin", LoadStats())
    assert [picker.pick(fleet).instance_id for _ in range(6)] == ["i0", "i1", "i2"] * 2


def test_weighted_gives_degraded_a_tenth() -> None:
    """A degraded instance gets about a tenth of an available one's share."""
    fleet = _fleet(AVAILABLE, DEGRADED)
    picker = balancer_for("weighted", LoadStats())
    counts = Counter(picker.pick(fleet).instance_id for _ in range(5000))
    assert 0.05 < counts["i1"] / 5000 < 0.15


def test_random_uses_everyone() -> None:
    """Random choice reaches every instance."""
    fleet = _fleet(AVAILABLE, AVAILABLE, AVAILABLE)
    picker = balancer_for("random", LoadStats())
    assert {picker.pick(fleet).instance_id for _ in range(300)} == {"i0", "i1", "i2"}


def test_least_outstanding_prefers_the_idle() -> None:
    """The instance with fewer requests in flight is chosen."""
    fleet = _fleet(AVAILABLE, AVAILABLE)
    stats = LoadStats()
    stats.begin(fleet[0].key)
    stats.begin(fleet[0].key)
    picker = balancer_for("least-outstanding", stats)
    assert {picker.pick(fleet).instance_id for _ in range(50)} == {"i1"}


def test_p2c_prefers_lower_latency() -> None:
    """Power of two choices on the latency EWMA sends most work to the faster instance."""
    fleet = _fleet(AVAILABLE, AVAILABLE)
    stats = LoadStats()
    for _ in range(10):
        stats.begin(fleet[0].key)
        stats.end(fleet[0].key, 0.5)
        stats.begin(fleet[1].key)
        stats.end(fleet[1].key, 0.01)
    picker = balancer_for("p2c-ewma", stats)
    assert {picker.pick(fleet).instance_id for _ in range(50)} == {"i1"}


def test_unknown_strategy_names_the_known_ones() -> None:
    """A typo in a strategy name is refused with the allowed names."""
    with pytest.raises(ValueError, match="round-robin"):
        balancer_for("fastest", LoadStats())


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_connect_error_ejects_and_trial_closes() -> None:
    """Refused: open at once; after the backoff one trial is allowed; its success closes."""
    clock = Clock()
    detector = OutlierDetector(OutlierPolicy(base_ejection_s=1.0), clock=clock)
    key = ("llm", "a")
    detector.failed(key, connect_error=True, peers=4)
    assert detector.state(key) is CircuitState.OPEN
    assert not detector.allows(key)
    clock.now += 1.2
    assert detector.state(key) is CircuitState.HALF_OPEN
    assert detector.allows(key)
    detector.started(key)
    assert not detector.allows(key)  # only one trial at a time
    detector.succeeded(key)
    assert detector.state(key) is CircuitState.CLOSED


def test_consecutive_failures_then_longer_backoff() -> None:
    """Five failures open it; a failed trial re-opens it for twice as long."""
    clock = Clock()
    detector = OutlierDetector(OutlierPolicy(base_ejection_s=1.0), clock=clock)
    key = ("llm", "a")
    for _ in range(4):
        detector.failed(key, peers=4)
    assert detector.state(key) is CircuitState.CLOSED
    detector.failed(key, peers=4)
    assert detector.state(key) is CircuitState.OPEN
    clock.now += 1.2
    detector.started(key)
    detector.failed(key, peers=4)
    assert detector.state(key) is CircuitState.OPEN
    clock.now += 1.2
    assert detector.state(key) is CircuitState.OPEN  # second ejection: about 2 s
    clock.now += 1.0
    assert detector.state(key) is CircuitState.HALF_OPEN


def test_a_request_from_before_the_ejection_does_not_close_it() -> None:
    """A success that started before the circuit opened says nothing about now."""
    detector = OutlierDetector(OutlierPolicy(), clock=Clock())
    key = ("llm", "a")
    detector.failed(key, connect_error=True, peers=4)
    detector.succeeded(key)
    assert detector.state(key) is CircuitState.OPEN


def test_the_share_is_counted_per_service() -> None:
    """Ejections in one service do not use up another service's allowance."""
    detector = OutlierDetector(OutlierPolicy(max_ejected_share=0.5), clock=Clock())
    for name in ("a", "b"):
        detector.failed(("chat", name), connect_error=True, peers=4)
    detector.failed(("embed", "x"), connect_error=True, peers=2)
    assert detector.state(("embed", "x")) is CircuitState.OPEN


def test_never_ejects_more_than_the_share() -> None:
    """With max 50% ejected, the third of four failing instances stays in."""
    detector = OutlierDetector(OutlierPolicy(max_ejected_share=0.5), clock=Clock())
    for name in ("a", "b", "c"):
        detector.failed(("llm", name), connect_error=True, peers=4)
    states = [detector.state(("llm", n)) for n in ("a", "b", "c")]
    assert states == [CircuitState.OPEN, CircuitState.OPEN, CircuitState.CLOSED]


def test_panic_routes_to_all() -> None:
    """When fewer than the panic threshold look healthy, every instance is used."""
    clock = Clock()
    policy = OutlierPolicy(max_ejected_share=1.0, panic_threshold=0.5)
    detector = OutlierDetector(policy, clock=clock)
    fleet = _fleet(AVAILABLE, AVAILABLE, AVAILABLE, AVAILABLE)
    for instance in fleet[:3]:
        detector.failed(instance.key, connect_error=True, peers=4)
    chosen, panic = detector.routable(fleet, lambda i: i.key)
    assert panic
    assert chosen == fleet
    clock.now += 1.2  # the ejections end; one trial each for i0 and i1 succeeds
    for instance in fleet[:2]:
        detector.started(instance.key)
        detector.succeeded(instance.key)
    detector.started(fleet[2].key)  # i2's trial is still in flight
    chosen, panic = detector.routable(fleet, lambda i: i.key)
    assert not panic
    assert [i.instance_id for i in chosen] == ["i0", "i1", "i3"]
