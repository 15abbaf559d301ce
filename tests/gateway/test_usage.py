"""Reading token counts out of replies and streams, and removing the usage the gateway added."""

from __future__ import annotations

import json

from fleetwatch.gateway._report import Usage
from fleetwatch.gateway._usage import StreamUsage, usage_of, whole_usage


def _event(payload: object) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def test_usage_from_openai_and_llama_cpp_fields() -> None:
    """cached_tokens wins; llama.cpp's timings fill in what usage lacks."""
    openai = {"usage": {"prompt_tokens": 10, "completion_tokens": 2,
                        "prompt_tokens_details": {"cached_tokens": 8}}}  # fmt: skip
    llama = {"timings": {"cache_n": 7, "prompt_n": 3, "predicted_n": 4}}
    assert usage_of(openai) == Usage(prompt=10, completion=2, cached=8)
    assert usage_of(llama) == Usage(prompt=10, completion=4, cached=7)
    assert usage_of({"choices": []}) is None
    assert whole_usage(json.dumps(openai).encode(), "application/json") == usage_of(openai)
    assert whole_usage(b"not json", "application/json") is None


def test_stream_passes_plain_events_untouched_and_strips_added_usage() -> None:
    """Events without usage pass as they are; the usage-only event goes; usage on a choice
    event is removed from it; the counts are kept."""
    scanner = StreamUsage(strip=True)
    token = _event({"choices": [{"delta": {"content": "hi"}}]})
    assert scanner.feed(token) is token
    with_choice = _event({"choices": [{"delta": {}}], "usage": {"completion_tokens": 1}})
    only_usage = _event({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}})
    relayed = scanner.feed(with_choice + only_usage) + scanner.feed(b"data: [DONE]\n\n")
    assert b"usage" not in relayed
    assert relayed.endswith(b"data: [DONE]\n\n")
    assert relayed.count(b"data: ") == 2
    assert scanner.usage == Usage(prompt=5, completion=2)


def test_stream_reassembles_events_split_across_chunks() -> None:
    """A usage event cut in three chunks is still read; a client that asked keeps it."""
    scanner = StreamUsage(strip=False)
    event = _event({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}})
    parts = [event[:10], event[10:30], event[30:]]
    relayed = b"".join(scanner.feed(p) for p in parts) + scanner.flush()
    assert relayed == event
    assert scanner.usage.completion == 2
    assert scanner.events == 1
