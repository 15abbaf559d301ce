"""The parts of stream recovery, alone: which requests may be continued, stop strings across a
seam, and reading what the client received from OpenAI and llama.cpp streams."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fleetwatch.gateway.recovery import (
    CHAT,
    COMPLETIONS,
    OpenAIStreamReader,
    RecoverySettings,
    SeamStop,
    Transcript,
    unrecoverable,
)
from fleetwatch.gateway.recovery._llamacpp import NativeStreamReader, continuation_body

GREEDY_CHAT: dict[str, Any] = {
    "messages": [{"role": "user", "content": "hi"}],
    "temperature": 0,
    "stream": True,
}


def _event(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _chat_chunk(text: str | None, finish: str | None = None) -> bytes:
    delta = {} if text is None else {"content": text}
    return _event(
        {
            "id": "c1",
            "created": 7,
            "model": "m",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def test_greedy_chat_and_completions_are_recoverable_by_default() -> None:
    """temperature 0 (or top_k 1) chat and single-prompt completions may be continued."""
    settings = RecoverySettings()
    assert unrecoverable(CHAT, GREEDY_CHAT, settings) is None
    assert unrecoverable(CHAT, {**GREEDY_CHAT, "temperature": 0.7, "top_k": 1}, settings) is None
    completion = {"prompt": "Once", "temperature": 0}
    assert unrecoverable(COMPLETIONS, completion, settings) is None
    assert unrecoverable(COMPLETIONS, {"prompt": [1, 2, 3], "temperature": 0}, settings) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"tools": [{"type": "function"}]}, "tool calls"),
        ({"response_format": {"type": "json_schema"}}, "structured output"),
        ({"grammar": "root ::= x"}, "grammar"),
        ({"logprobs": True}, "logprobs"),
        ({"n": 2}, "several choices"),
        ({"temperature": 0.8}, "sampled"),
        ({"temperature": None}, "sampled"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "more than text"),
    ],
)
def test_requests_that_cannot_be_spliced_say_why(change: dict[str, Any], reason: str) -> None:
    """Tool calls, structured output, grammars, logprobs, n > 1, sampling and images are not
    continued, and the reason names which."""
    why = unrecoverable(CHAT, {**GREEDY_CHAT, **change}, RecoverySettings())
    assert why is not None
    assert reason in why


def test_sampled_requests_are_recovered_only_on_the_routes_configured() -> None:
    """sampled_routes turns recovery on for sampled requests of one route, not the other."""
    settings = RecoverySettings(sampled_routes=frozenset({CHAT}))
    assert unrecoverable(CHAT, {**GREEDY_CHAT, "temperature": 1.0}, settings) is None
    assert unrecoverable(COMPLETIONS, {"prompt": "x", "temperature": 1.0}, settings) is not None
    assert unrecoverable(CHAT, GREEDY_CHAT, RecoverySettings(enabled=False)) == "recovery is off"


def test_bad_recovery_settings_name_what_is_allowed() -> None:
    """An unknown route, attempts out of range or a non-positive timeout are refused."""
    with pytest.raises(ValueError, match="allowed: /v1/chat/completions"):
        RecoverySettings(sampled_routes=frozenset({"/v1/embeddings"}))
    with pytest.raises(ValueError, match="0-5"):
        RecoverySettings(attempts=9)
    with pytest.raises(ValueError, match="inter_token_timeout"):
        RecoverySettings(inter_token_timeout=0)


def test_a_stop_string_straddling_the_seam_ends_the_continuation() -> None:
    """The client holds "...the EN"; the continuation's "D of it" completes "END": nothing
    more goes out and the stream stops."""
    seam = SeamStop("it was the EN", ["END"])
    assert seam.feed("D") == ""
    assert seam.stopped


def test_a_continuation_with_no_straddling_stop_is_held_only_briefly() -> None:
    """Held for at most len(longest stop) - 1 characters, then released whole."""
    seam = SeamStop("it was the EN", ["END", "STOP"])
    assert seam.feed("d") == ""  # "ENd": not yet clear of "STOP"'s length
    assert seam.feed("ing") == "ding"
    assert not seam.stopped
    assert seam.feed(" more") == " more"


def test_the_openai_reader_keeps_the_text_and_withholds_error_events() -> None:
    """Events are relayed whole (a split one is held), the text and stream id are kept, and
    an error event is neither relayed nor followed."""
    transcript = Transcript(chat=True)
    reader = OpenAIStreamReader(transcript)
    first = _chat_chunk("Hel")
    assert reader.feed(first[:10]) == b""
    assert reader.feed(first[10:] + _chat_chunk("lo")) == first + _chat_chunk("lo")
    error = _event({"error": {"message": "boom"}})
    assert reader.feed(_chat_chunk("!") + error + b"data: [DONE]\n\n") == _chat_chunk("!")
    assert reader.broken is not None
    assert "boom" in reader.broken
    assert "".join(str(s) for s in transcript.segments) == "Hello!"
    assert transcript.head["id"] == "c1"
    assert not transcript.done


def test_the_openai_reader_sees_the_end_of_a_whole_stream() -> None:
    """A finish reason and [DONE]: the transcript is complete and done."""
    transcript = Transcript(chat=False)
    reader = OpenAIStreamReader(transcript)
    chunk = {"id": "t", "choices": [{"index": 0, "text": "x", "finish_reason": "stop"}]}
    reader.feed(_event(chunk) + b"data: [DONE]\n\n")
    assert transcript.complete
    assert transcript.done
    assert reader.broken is None


def test_the_native_reader_gives_held_back_ids_with_the_text_that_releases_them() -> None:
    """llama.cpp sends a token with no text while it holds a partial stop string or UTF-8
    character; its id reaches the transcript with the text that follows."""
    reader = NativeStreamReader()
    pieces = reader.feed(
        _event({"content": "", "tokens": [5], "stop": False})
        + _event({"content": "ab", "tokens": [6], "stop": False})
        + _event({"content": "", "stop": True, "stop_type": "limit", "tokens_predicted": 2})
    )
    assert pieces == [("ab", [5, 6])]
    assert reader.finish_reason == "length"
    assert reader.predicted == 2


def test_a_continuation_asks_for_what_is_left_of_max_tokens() -> None:
    """max_tokens 40 with 15 generated: n_predict 25, from the given ids, with the stops and
    sampling settings of the request."""
    payload = {**GREEDY_CHAT, "max_tokens": 40, "stop": "END", "seed": 3}
    body = continuation_body(payload, [1, 2, 3], 15)
    assert body["n_predict"] == 25
    assert body["prompt"] == [1, 2, 3]
    assert body["stop"] == ["END"]
    assert body["seed"] == 3
    assert body["temperature"] == 0
    assert continuation_body(GREEDY_CHAT, [1], 4)["n_predict"] == -1


def test_a_reply_with_more_than_text_cannot_be_spliced() -> None:
    """A delta with reasoning_content (or tool calls) marks the reply unspliceable: a
    continuation from its text alone would lose that part."""
    transcript = Transcript(chat=True)
    reader = OpenAIStreamReader(transcript)
    thinking = {"id": "c", "choices": [{"index": 0, "delta": {"reasoning_content": "hm"}}]}
    reader.feed(_event(thinking))
    assert transcript.unspliceable == "the reply carries reasoning_content"
    assert reader.broken is None


def test_an_event_with_a_null_error_is_not_a_break() -> None:
    """``"error": null`` in an event is no error event."""
    reader = OpenAIStreamReader(Transcript(chat=True))
    chunk = {"id": "c", "error": None, "choices": [{"index": 0, "delta": {"content": "a"}}]}
    assert reader.feed(_event(chunk))
    assert reader.broken is None


def test_penalties_on_what_was_generated_make_a_request_sampled() -> None:
    """presence, frequency and repeat penalties would not count the tokens before the seam, so
    a request with one is recovered only where sampled requests are."""
    for change in ({"presence_penalty": 0.5}, {"frequency_penalty": 1}, {"repeat_penalty": 1.1}):
        why = unrecoverable(CHAT, {**GREEDY_CHAT, **change}, RecoverySettings())
        assert why is not None
        assert "penalizes repetition" in why
    assert unrecoverable(CHAT, {**GREEDY_CHAT, "repeat_penalty": 1}, RecoverySettings()) is None
