"""Filters, scorers, pickers and the named strategies, each alone and together."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from fleetwatch.registry._model import InstanceStatus
from fleetwatch.routing import (
    LoadScorer,
    LoadStats,
    PrefixIndex,
    PrefixScorer,
    Routable,
    RouteRequest,
    RouterSettings,
    ServesModel,
    SessionScorer,
    Signals,
    Strategy,
    TenantAllowed,
    build_pipeline,
    scorer_weights,
)
from fleetwatch.routing._scorers import LatencyScorer, OutstandingScorer, relative
from tests._support.instances import fleet


def test_filters_keep_model_routable_and_tenant() -> None:
    """Each filter keeps only what may serve: its model, routable status, its tenant."""
    one, two, three = fleet(3)
    two = replace(two, metadata={"model": "m2"})
    three = replace(three, status=InstanceStatus.DRAINING, metadata={"tenants": "team-a"})
    request = RouteRequest(model="m1", tenant="team-b")
    assert ServesModel().apply(request, [one, two, three]) == [one, three]
    assert Routable().apply(request, [one, two, three]) == [one, two]
    assert TenantAllowed().apply(request, [one, three]) == [one]
    assert TenantAllowed().apply(replace(request, tenant="team-a"), [one, three]) == [one, three]


def test_relative_scores_favour_the_least_loaded() -> None:
    """The least loaded scores 1, one request more 1/2, two more 1/3."""
    assert relative([3.0, 4.0, 5.0]) == [1.0, 0.5, pytest.approx(1 / 3)]


def test_load_scorer_adds_reports_and_own_requests() -> None:
    """Reported waiting counts double, running once, plus this client's in flight."""
    a, b = fleet(2)
    stats = LoadStats(outstanding={a.key: 1})
    signals = Signals(stats=stats, reported={b.key: {"waiting": 1.0, "running": 1.0}})
    assert LoadScorer(signals).score(RouteRequest(), [a, b]) == [1.0, pytest.approx(1 / 3)]


def test_outstanding_and_latency_scorers() -> None:
    """Fewer in flight and a lower latency EWMA score higher; unmeasured scores 1."""
    a, b, c = fleet(3)
    stats = LoadStats(outstanding={a.key: 2}, latency_ewma={a.key: 0.1, b.key: 0.2})
    signals = Signals(stats=stats)
    assert OutstandingScorer(signals).score(RouteRequest(), [a, b]) == [pytest.approx(1 / 3), 1.0]
    # Costs: a 0.1 s x (2 + 1) = 0.3, b 0.2 s x 1 = 0.2 (the best), c unmeasured.
    latency = LatencyScorer(signals).score(RouteRequest(), [a, b, c])
    assert latency == [pytest.approx(0.2 / 0.3), 1.0, 1.0]


def test_prefix_scorer_rewards_the_holder_until_it_is_too_busy() -> None:
    """The instance holding the prompt scores its share; too far above the least loaded, 0."""
    a, b = fleet(2)
    stats = LoadStats()
    index = PrefixIndex(capacity=100)
    scorer = PrefixScorer(index, Signals(stats=stats), max_imbalance=2)
    request = RouteRequest(blocks=(1, 2, 3, 4))
    index.sent(a, (1, 2, 3))
    assert scorer.score(request, [a, b]) == [0.75, 0.0]
    stats.outstanding[a.key] = 3  # too busy: no share, and b, holding least, takes the prompt
    assert scorer.score(request, [a, b]) == [0.0, 1.0]
    assert scorer.score(RouteRequest(), [a, b]) == [0.0, 0.0]
    # Nobody holds this prompt: the one holding least scores 1 (conversations spread evenly).
    stats.outstanding[a.key] = 0
    assert scorer.score(RouteRequest(blocks=(7, 8)), [a, b]) == [0.0, 1.0]


def test_prefix_ceiling_counts_requests_once() -> None:
    """Three turns in flight on a 2-slot holder (reported: 2 running, 1 waiting; this gateway:
    3 outstanding) are 3 requests, within an imbalance of 4: the conversation stays with its
    cache. Counted as load (waiting twice, plus the outstanding again) they were 7."""
    a, b = fleet(2)
    stats = LoadStats(outstanding={a.key: 3})
    reported = {a.key: {"running": 2.0, "waiting": 1.0}}
    signals = Signals(stats=stats, reported=reported)
    index = PrefixIndex(capacity=100)
    index.sent(a, (1, 2, 3, 4))
    scorer = PrefixScorer(index, signals, max_imbalance=4)
    assert signals.requests(a.key) == 3
    assert signals.load(a.key) == 7
    assert scorer.score(RouteRequest(blocks=(1, 2, 3, 4)), [a, b]) == [1.0, 0.0]
    reported[a.key] = {"running": 2.0, "waiting": 3.0}  # 5 held: now too busy
    assert scorer.score(RouteRequest(blocks=(1, 2, 3, 4)), [a, b]) == [0.0, 1.0]


def test_prefix_strategy_keeps_a_conversation_on_its_instance() -> None:
    """Each conversation's later turns go where its first went; new conversations spread
    evenly (two each), even with nothing in flight to tell the instances apart."""
    instances = fleet(3)
    stats = LoadStats()
    pipeline = build_pipeline(RouterSettings(strategy="prefix"), Signals(stats=stats))
    homes: dict[int, str] = {}
    for turn in range(4):
        for conversation in range(6):
            blocks = tuple(hash((conversation, n)) for n in range(3 + turn))
            chosen = pipeline.choose(RouteRequest(blocks=blocks), instances)
            homes.setdefault(conversation, chosen.instance_id)
            assert chosen.instance_id == homes[conversation]
    assert sorted(Counter(homes.values()).values()) == [2, 2, 2]


def test_prefix_gives_way_to_load() -> None:
    """A holder far busier than the others loses the request to the least loaded."""
    a, b = fleet(2)
    stats = LoadStats(outstanding={a.key: 10})
    pipeline = build_pipeline(RouterSettings(strategy="prefix"), Signals(stats=stats))
    scorer = pipeline.scorer("prefix")
    assert isinstance(scorer, PrefixScorer)
    scorer.index.sent(a, (1, 2, 3))
    assert pipeline.choose(RouteRequest(blocks=(1, 2, 3)), [a, b]) is b


def test_session_strategy_pins_and_repins_on_leave() -> None:
    """A session's requests go to one instance; without it, to another; it never moves otherwise."""
    instances = fleet(3)
    pipeline = build_pipeline(RouterSettings(strategy="session"), Signals())
    request = RouteRequest(session="conversation-7")
    homes = {pipeline.choose(request, instances).instance_id for _ in range(20)}
    assert len(homes) == 1
    rest = [i for i in instances if i.instance_id not in homes]
    assert pipeline.choose(request, rest).instance_id not in homes


def test_session_scorer_scores_the_pinned_one() -> None:
    """Exactly one candidate scores 1 for a session; none without a session."""
    instances = fleet(3)
    scorer = SessionScorer(Signals())
    assert sorted(scorer.score(RouteRequest(session="s"), instances)) == [0.0, 0.0, 1.0]
    assert scorer.score(RouteRequest(), instances) == [0.0, 0.0, 0.0]


def test_presets_and_weights() -> None:
    """Weights replace a preset's, 0 drops a scorer, unknown names and blind strategies refuse."""
    assert scorer_weights(Strategy.PREFIX, {}) == {"prefix": 2.0, "load": 1.0}
    assert scorer_weights(Strategy.PREFIX, {"load": 0, "session": 2}) == {
        "prefix": 2.0,
        "session": 2.0,
    }
    with pytest.raises(ValueError, match="unknown scorer 'cache'; known: load"):
        scorer_weights(Strategy.PREFIX, {"cache": 1})
    with pytest.raises(ValueError, match="ignores scores"):
        scorer_weights(Strategy.ROUND_ROBIN, {"load": 1})
    with pytest.raises(ValueError, match="finite number"):
        scorer_weights(Strategy.PREFIX, {"load": -1})
    with pytest.raises(ValueError, match="unknown routing strategy 'fastest'; known: round-robin"):
        build_pipeline(RouterSettings(strategy="fastest"), Signals())


def test_least_load_spreads_a_burst() -> None:
    """With in-flight counts rising as it picks, least-load spreads 30 requests evenly."""
    instances = fleet(3)
    stats = LoadStats()
    pipeline = build_pipeline(RouterSettings(strategy="least-load"), Signals(stats=stats))
    for _ in range(30):
        stats.begin(pipeline.choose(RouteRequest(), instances).key)
    counts = sorted(stats.outstanding.values())
    assert sum(counts) == 30
    assert counts[-1] - counts[0] <= 3  # two random choices: near even, not exact


def test_round_robin_ignores_scores() -> None:
    """Round-robin visits each in turn."""
    instances = fleet(3)
    pipeline = build_pipeline(RouterSettings(strategy="round-robin"), Signals())
    picks = Counter(pipeline.pick(instances).instance_id for _ in range(9))
    assert set(picks.values()) == {3}
