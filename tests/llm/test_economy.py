"""The token economy: passive evidence, the probe interval and the hourly budget."""

from __future__ import annotations

from fleetwatch.llm._economy import ProbeGovernor


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def governor(clock: Clock, **kwargs: float) -> ProbeGovernor:
    settings = {"min_interval": 60.0, "evidence_window": 30.0, "hourly_budget": 1000} | kwargs
    return ProbeGovernor(clock=clock, **settings)  # type: ignore[arg-type]


def test_a_rising_token_counter_suppresses_probes() -> None:
    """While the server's own counter rises, no probe runs; once it stops, one may."""
    clock = Clock()
    account = governor(clock)
    account.note_generated_counter(100)
    clock.now += 1
    account.note_generated_counter(180)
    assert not account.decide(40).probe
    clock.now += 31
    account.note_generated_counter(180)
    assert account.decide(40).probe


def test_our_own_probe_is_not_taken_for_traffic() -> None:
    """After a probe, the counter's rise by the probe's tokens is not passive evidence."""
    clock = Clock()
    account = governor(clock, min_interval=0)
    account.note_generated_counter(100)
    account.record_probe(42, generated=4)
    clock.now += 5
    account.note_generated_counter(104)  # the probe generated 4 tokens
    assert account.decide(40).probe
    account.record_probe(42, generated=4)
    account.note_generated_counter(110)  # 4 of ours and 2 of someone else's
    assert not account.decide(40).probe


def test_probes_are_spaced_by_the_interval() -> None:
    """A second probe waits for min_interval."""
    clock = Clock()
    account = governor(clock)
    assert account.decide(40).probe
    account.record_probe(42)
    clock.now += 59
    decision = account.decide(40)
    assert not decision.probe
    assert "every 60s" in decision.reason
    clock.now += 1
    assert account.decide(40).probe


def test_the_hourly_budget_caps_spending() -> None:
    """With probes allowed every second, spending stops at the hourly budget, then resumes."""
    clock = Clock()
    account = governor(clock, min_interval=1, hourly_budget=200)
    for _ in range(3600):
        if account.decide(40).probe:
            account.record_probe(42)
        clock.now += 1
    assert account.spent_last_hour() <= 200
    assert account.probes_run == 4  # 4 x 42 = 168; a fifth would need 168 + 40 > 200
    assert account.probes_skipped > 3000
    clock.now += 3600
    assert account.decide(40).probe


def test_successes_seen_by_fleetwatch_count_as_evidence() -> None:
    """A request fleetwatch saw succeed suppresses the probe for the evidence window."""
    clock = Clock()
    account = governor(clock)
    account.note_success()
    assert "passive evidence" in account.decide(40).reason
