"""Consistent hashing with bounded loads for session affinity."""

from __future__ import annotations

from collections import Counter

from fleetwatch.routing._affinity import Ring, bounded_choice
from tests._support.instances import fleet


def test_sessions_spread_and_stay_put() -> None:
    """Sessions spread over the ring, and the same session always gets the same instance."""
    instances = fleet(3)
    ring = Ring()
    chosen = {
        f"s{n}": bounded_choice(ring, f"s{n}", instances, lambda i: 0, 1.25) for n in range(300)
    }
    shares = Counter(i.instance_id for i in chosen.values())
    assert len(shares) == 3
    assert min(shares.values()) > 50
    again = {s: bounded_choice(ring, s, instances, lambda i: 0, 1.25) for s in chosen}
    assert again == chosen


def test_removing_an_instance_moves_only_its_sessions() -> None:
    """When one instance leaves, only the sessions it held move."""
    instances = fleet(3)
    ring = Ring()
    before = {
        f"s{n}": bounded_choice(ring, f"s{n}", instances, lambda i: 0, 1.25) for n in range(300)
    }
    remaining = [i for i in instances if i.instance_id != "i1"]
    after = {s: bounded_choice(ring, s, remaining, lambda i: 0, 1.25) for s in before}
    moved = [s for s in before if before[s].instance_id != after[s].instance_id]
    assert moved
    assert all(before[s].instance_id == "i1" for s in moved)


def test_a_busy_instance_hands_its_session_to_the_next() -> None:
    """Past the load bound, the session goes to the next instance on its walk."""
    instances = fleet(3)
    ring = Ring()
    home = bounded_choice(ring, "chat-1", instances, lambda i: 0, 1.25)
    order = ring.order("chat-1", [i.instance_id for i in instances])
    busy = {home.instance_id: 6}
    moved = bounded_choice(ring, "chat-1", instances, lambda i: busy.get(i.instance_id, 0), 1.25)
    assert order[0] == home.instance_id
    assert moved.instance_id == order[1]
