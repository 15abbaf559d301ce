"""The deployment record's arithmetic and revisions, and spread placement over hosts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetwatch.deployments import (
    Candidate,
    Deployment,
    DeploymentSpec,
    candidates,
    place,
    resolve_amount,
    retire_order,
)
from fleetwatch.hosts import Host


@pytest.mark.parametrize(
    ("amount", "replicas", "up", "down"),
    [("25%", 2, 1, 0), ("25%", 8, 2, 2), ("10%", 400, 40, 40), ("3", 10, 3, 3), ("0", 5, 0, 0)],
)
def test_amounts_round_as_kubernetes_does(amount: str, replicas: int, up: int, down: int) -> None:
    """A percentage of replicas rounds up for surge and down for unavailability."""
    assert resolve_amount(amount, replicas, round_up=True) == up
    assert resolve_amount(amount, replicas, round_up=False) == down


def test_a_spec_that_could_not_move_is_refused() -> None:
    """max_surge 0 with max_unavailable 0 could never replace anything: a clear error."""
    with pytest.raises(ValueError, match="cannot both be 0"):
        DeploymentSpec("llm", "llama", "2", 4, max_surge="0", max_unavailable="0")
    with pytest.raises(ValueError, match="neither a count"):
        DeploymentSpec("llm", "llama", "2", 4, max_surge="lots")


def test_revisions_keep_the_last_n_and_round_trip() -> None:
    """Each revision pushes the previous into the history (at most the limit), and the record
    survives its own JSON form."""
    deployment = Deployment(DeploymentSpec("llm", "llama", "1", 2), revision=1)
    for version in ("2", "3", "4"):
        deployment = deployment.revised(
            DeploymentSpec("llm", "llama", version, 2, params={"ctx": "4096"}), limit=2
        )
    assert deployment.revision == 4
    assert [n for n, _ in deployment.history] == [3, 2]
    assert deployment.spec_at(2).version == "2"
    with pytest.raises(KeyError, match="not kept"):
        deployment.spec_at(1)
    assert Deployment.from_dict(deployment.to_dict()) == deployment


def test_placement_matches_labels_and_skips_cordoned_and_down_hosts() -> None:
    """Only live, uncordoned hosts whose labels match are candidates."""
    hosts = [
        (Host("a", "10.0.0.1", labels={"gpu": "h100"}, capacity=2), True),
        (Host("b", "10.0.0.2", labels={"gpu": "a10"}, capacity=2), True),
        (Host("c", "10.0.0.3", labels={"gpu": "h100"}, capacity=2, cordoned=True), True),
        (Host("d", "10.0.0.4", labels={"gpu": "h100"}, capacity=2), False),
    ]
    assert [c.host_id for c in candidates(hosts, "llm", {"gpu": "h100"})] == ["a"]


@given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3)), min_size=1, max_size=8),
    st.integers(0, 30),
)
def test_spread_keeps_per_host_counts_within_one_where_capacity_allows(
    slots: list[tuple[int, int]], count: int
) -> None:
    """Water-filling: after placing, no host with a free slot left runs 2+ fewer instances
    of the service than another host that received one; capacity is never exceeded."""
    hosts = [Candidate(f"h{n}", free, running) for n, (free, running) in enumerate(slots)]
    chosen = place(count, hosts)
    assert len(chosen) == min(count, sum(free for free, _ in slots))
    after = {h.host_id: h.running + chosen.count(h.host_id) for h in hosts}
    left = {h.host_id: h.free - chosen.count(h.host_id) for h in hosts}
    assert min(left.values()) >= 0
    receivers = {h for h in chosen}
    for host in hosts:
        if left[host.host_id] > 0:
            for receiver in receivers:
                assert after[receiver] <= after[host.host_id] + 1


def test_old_instances_leave_from_the_busiest_host_first() -> None:
    """Retiring keeps what stays spread: the host with the most goes first."""
    order = retire_order({"i1": "a", "i2": "a", "i3": "a", "i4": "b"})
    assert order[:2] == ["i1", "i2"]
    assert set(order) == {"i1", "i2", "i3", "i4"}
