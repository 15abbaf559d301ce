"""Prompt blocks and the per-instance prefix index."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fleetwatch.routing import PrefixIndex, prompt_blocks, render_prompt
from tests._support.instances import fleet


def _chat(*contents: str) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": c} for c in contents]}


def test_a_longer_conversation_shares_its_earlier_blocks() -> None:
    """Turn 2's blocks start with turn 1's full blocks; a changed first message shares none."""
    system = "s" * 1000
    first = prompt_blocks(render_prompt(_chat(system, "q1")), 256)
    second = prompt_blocks(render_prompt(_chat(system, "q1", "a1" * 300, "q2")), 256)
    other = prompt_blocks(render_prompt(_chat("t" + system[1:], "q1")), 256)
    assert len(first) == 3  # 1000 + separators: three full blocks, the partial one left out
    assert second[: len(first)] == first
    assert len(second) > len(first)
    assert not set(other) & set(first)


def test_completion_prompts_and_content_parts_render() -> None:
    """A completion's prompt and chat content parts are rendered; other shapes render empty."""
    assert render_prompt({"prompt": "abc"}) == "abc"
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]}
    assert "hello" in render_prompt(parts)
    assert render_prompt({"input": "embedding text"}) == ""


def test_index_matches_the_shared_prefix_and_forgets_oldest_beyond_capacity() -> None:
    """Matches count leading blocks only; past capacity the least recently sent go first."""
    instance = fleet(1)[0]
    index = PrefixIndex(capacity=4)
    index.sent(instance, (1, 2, 3))
    assert index.matched(instance, (1, 2, 3, 4)) == 3
    assert index.matched(instance, (9, 2, 3)) == 0  # chained hashes: the first miss ends it
    index.sent(instance, (5, 6))
    assert index.size(instance.key) == 4
    assert index.matched(instance, (1,)) == 0  # the oldest block went first
    assert index.matched(instance, (2, 3)) == 2
    assert index.conversations(instance.key) == 1  # root 1 was evicted with its block


def test_conversations_are_counted_by_their_first_block() -> None:
    """Turns of one conversation share a root; another conversation adds one."""
    instance = fleet(1)[0]
    index = PrefixIndex(capacity=100)
    index.sent(instance, (1, 2))
    index.sent(instance, (1, 2, 3))
    assert index.conversations(instance.key) == 1
    index.sent(instance, (7, 8))
    assert index.conversations(instance.key) == 2


def test_a_restarted_or_departed_instance_starts_empty() -> None:
    """A new registration time (a new process) or leaving discovery drops what was sent."""
    instance = fleet(1)[0]
    index = PrefixIndex(capacity=10)
    index.sent(instance, (1, 2))
    assert index.matched(replace(instance, registered_at=200.0), (1, 2)) == 0
    index.sent(instance, (1, 2))
    index.keep_only([])
    assert index.matched(instance, (1, 2)) == 0
    index.sent(instance, (1, 2))
    index.forget(instance.key)
    assert index.size(instance.key) == 0


def test_index_stats_count_expected_hits() -> None:
    """The index counts blocks looked up at the chosen instance and those it expected there."""
    instance = fleet(1)[0]
    index = PrefixIndex(capacity=10)
    index.sent(instance, (1, 2))
    index.sent(instance, (1, 2, 3, 4))
    assert (index.stats.looked_up, index.stats.matched) == (6, 2)


def test_capacity_must_be_positive() -> None:
    """A zero capacity is refused with a message naming it."""
    with pytest.raises(ValueError, match="capacity"):
        PrefixIndex(capacity=0)
