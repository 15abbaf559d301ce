"""Aggregation: the seed's rules, as examples and as properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetwatch.health import HealthStatus, ScoreThresholds, Vote, aggregate

H, D, U, K = (
    HealthStatus.HEALTHY,
    HealthStatus.DEGRADED,
    HealthStatus.UNHEALTHY,
    HealthStatus.UNKNOWN,
)

votes = st.lists(
    st.builds(
        Vote,
        name=st.text("abcdef", min_size=1, max_size=4),
        status=st.sampled_from(list(HealthStatus)),
        weight=st.floats(0, 10, allow_nan=False),
        critical=st.booleans(),
        duration_ms=st.one_of(st.none(), st.floats(0, 1e4, allow_nan=False)),
    ),
    max_size=12,
)


def test_no_checks_is_unknown() -> None:
    """Nothing configured gives unknown, as in the seed."""
    verdict = aggregate([])
    assert verdict.status is K
    assert verdict.message == "No health checks configured"


def test_seed_example_scores() -> None:
    """Four healthy and one degraded score 0.9: healthy; two of each and one down: degraded."""
    assert aggregate([Vote(str(i), H) for i in range(4)] + [Vote("d", D)]).status is H
    mixed = [Vote("a", H), Vote("b", H), Vote("c", D), Vote("d", D), Vote("e", U)]
    verdict = aggregate(mixed)
    assert verdict.score == pytest.approx(0.6)
    assert verdict.status is D
    assert verdict.message == "Some systems degraded (2 degraded, 1 unhealthy, 0 unknown)"


def test_summary_counts_and_averages() -> None:
    """The summary counts statuses, averages durations and gives the healthy percentage."""
    summary = aggregate(
        [Vote("a", H, duration_ms=10), Vote("b", U, duration_ms=30), Vote("c", K)]
    ).summary
    assert (summary.total, summary.healthy, summary.unhealthy, summary.unknown) == (3, 1, 1, 1)
    assert summary.avg_duration_ms == 20
    assert summary.health_percentage == pytest.approx(100 / 3)


def test_thresholds_are_configurable() -> None:
    """Stricter thresholds turn the same score into a worse status."""
    four_of_five = [Vote(str(i), H) for i in range(4)] + [Vote("x", U)]
    assert aggregate(four_of_five).status is H
    assert aggregate(four_of_five, ScoreThresholds(healthy=0.9, degraded=0.8)).status is D


def test_thresholds_must_be_ordered() -> None:
    """A degraded threshold above the healthy one is refused with both values."""
    with pytest.raises(ValueError, match=r"healthy=0.5, degraded=0.7"):
        ScoreThresholds(healthy=0.5, degraded=0.7)


@given(votes)
def test_any_critical_unhealthy_makes_unhealthy(vs: list[Vote]) -> None:
    """Whatever else is true, one critical unhealthy check makes the whole unhealthy."""
    vs = [*vs, Vote("crit", U, critical=True)]
    verdict = aggregate(vs)
    assert verdict.status is U
    assert "crit" in verdict.critical_failed


@given(votes)
def test_status_follows_the_score(vs: list[Vote]) -> None:
    """Without critical failures the status is exactly the score's band."""
    verdict = aggregate(vs)
    if not vs or verdict.critical_failed:
        return
    if verdict.score is None:
        assert verdict.status is K
        assert sum(v.weight for v in vs) == 0
    elif verdict.score >= 0.8:
        assert verdict.status is H
    elif verdict.score >= 0.5:
        assert verdict.status is D
    else:
        assert verdict.status is U


@given(votes)
def test_score_is_a_weighted_mean_within_bounds(vs: list[Vote]) -> None:
    """The score is in [0, 1] and equals the weighted mean of the status scores."""
    verdict = aggregate(vs)
    total = sum(v.weight for v in vs)
    if verdict.score is None:
        assert total == 0
        return
    assert 0.0 <= verdict.score <= 1.0 + 1e-9
    assert verdict.score == pytest.approx(sum(v.weight * v.status.score for v in vs) / total)


@given(votes, st.sampled_from([H, D]))
def test_improving_a_check_never_worsens_the_verdict(vs: list[Vote], better: HealthStatus) -> None:
    """Replacing an unhealthy non-critical vote with a passing one never lowers the score."""
    if not vs:
        return
    worse = [*vs, Vote("z", U, weight=1.0)]
    improved = [*vs, Vote("z", better, weight=1.0)]
    before, after = aggregate(worse), aggregate(improved)
    if before.score is not None and after.score is not None:
        assert after.score >= before.score
    order = [U, D, H]
    if not before.critical_failed:
        assert order.index(after.status) >= order.index(before.status)


@given(votes)
def test_summary_counts_add_up(vs: list[Vote]) -> None:
    """Per-status counts always add up to the total."""
    s = aggregate(vs).summary
    assert s.healthy + s.degraded + s.unhealthy + s.unknown == s.total == len(vs)
