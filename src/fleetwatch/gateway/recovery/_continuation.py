"""One continuation of a broken stream on one instance, spliced into the client's stream.

The events it sends are in the client's format and carry the stream's first ``id``,
``created`` and ``model``; it ends the stream as the first server would have: one event with
the ``finish_reason``, the ``usage`` event when the client asked for it (the prompt counted
once, the completion as the tokens the client received), and one ``[DONE]``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetwatch.gateway._report import Usage
from fleetwatch.gateway.recovery._llamacpp import (
    NativeStreamReader,
    continuation_body,
    max_tokens,
    prompt_ids,
    refused,
    stop_strings,
    tokenize,
)
from fleetwatch.gateway.recovery._seam import SeamStop
from fleetwatch.gateway.recovery._transcript import BrokenStream, Transcript
from fleetwatch.http1 import Response, UpstreamPool

_JSON = b"content-type: application/json\r\n"

Emit = Callable[[bytes], Awaitable[None]]


@dataclass(slots=True)
class StreamPlan:
    """What continuing one streamed request needs, kept from its first byte on."""

    path: str
    payload: Mapping[str, Any]
    transcript: Transcript
    #: The client did not ask for usage in its stream.
    strip_usage: bool
    #: The prompt's token ids (the same on every instance of a model: computed once).
    prompt: list[int] | None = None
    cached: int | None = None
    usage: Usage = field(default_factory=Usage)

    def generated(self) -> int:
        """Token ids known for what the client received (text not yet tokenized excluded)."""
        return sum(len(s) for s in self.transcript.segments if isinstance(s, list))


def sse(payload: Mapping[str, Any]) -> bytes:
    """One SSE data event."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def continue_stream(
    pool: UpstreamPool,
    base_url: str,
    auth: bytes,
    plan: StreamPlan,
    emit: Emit,
    *,
    inter_token_timeout: float,
    hold: Callable[[Response], Response],
    first_text: Callable[[], None],
) -> None:
    """Continue ``plan``'s reply on the llama.cpp server at ``base_url`` until it ends, sending
    each event through ``emit``. Raises :class:`ContinuationFailed` (it refused: busy,
    unable), :class:`BrokenStream` or :class:`~fleetwatch.http1.UpstreamError` (it broke)
    when this server cannot finish it; what it relayed by then is in the transcript, so
    another can go on from there."""
    transcript = plan.transcript
    if plan.prompt is None:
        plan.prompt = await prompt_ids(pool, base_url, plan.path, plan.payload, auth)
    transcript.segments = await _as_ids(pool, base_url, auth, transcript.segments)
    generated = plan.generated()
    limit = max_tokens(plan.payload)
    if limit is not None and generated >= limit:
        await _finish(plan, emit, "length")
        return
    tokens = [*plan.prompt, *(t for s in transcript.segments if isinstance(s, list) for t in s)]
    body = json.dumps(continuation_body(plan.payload, tokens, generated)).encode()
    response = hold(await pool.request(base_url, "POST", "/completion", _JSON + auth, body))
    if response.status != 200:
        refused(response, "/completion", await response.read_some(512))
    reader = NativeStreamReader()
    seam = SeamStop(transcript.tail, stop_strings(plan.payload))
    held_ids: list[int] = []
    async for chunk in response.chunks():
        # The prompt and what was sent are prefilled first, maybe behind other requests:
        # the pool's read timeout bounds that; from the first token on, a pause is a hang.
        response.tighten(inter_token_timeout)
        for text, ids in reader.feed(chunk):
            out = seam.feed(text)
            held_ids.extend(ids)
            if seam.stopped:
                await _finish(plan, emit, "stop")
                return
            if out:
                await _text(plan, emit, out, held_ids, first_text)
                held_ids = []
        if reader.finish_reason is not None:
            break
    if reader.finish_reason is None:
        raise BrokenStream("the continuation ended without its final event")
    rest = seam.release()
    if rest:
        await _text(plan, emit, rest, held_ids, first_text)
    plan.cached = reader.cached
    await _finish(plan, emit, reader.finish_reason)


async def _as_ids(
    pool: UpstreamPool, base_url: str, auth: bytes, segments: list[str | list[int]]
) -> list[str | list[int]]:
    """``segments`` with each run of text tokenized (as generated text, on its own)."""
    out: list[str | list[int]] = []
    run: list[str] = []
    for segment in [*segments, []]:
        if isinstance(segment, str):
            run.append(segment)
            continue
        if run:
            out.append(await tokenize(pool, base_url, "".join(run), auth, prompt=False))
            run = []
        if segment:
            out.append(segment)
    return out


async def _text(
    plan: StreamPlan, emit: Emit, text: str, ids: list[int], first_text: Callable[[], None]
) -> None:
    first_text()
    plan.transcript.received(text, list(ids))
    plan.transcript.events += 1
    await emit(sse(plan.transcript.chunk(text)))


async def _finish(plan: StreamPlan, emit: Emit, reason: str) -> None:
    """The stream's last events: the finish reason, usage if asked (the completion: every
    token the client received), [DONE]."""
    transcript = plan.transcript
    completion = plan.generated()
    transcript.finish_reason = reason
    prompt = len(plan.prompt) if plan.prompt is not None else None
    cached = min(plan.cached, prompt) if plan.cached is not None and prompt is not None else None
    plan.usage = Usage(prompt=prompt, completion=completion, cached=cached)
    out = [sse(transcript.chunk(None, reason))]
    if not plan.strip_usage and prompt is not None:
        usage: dict[str, Any] = {
            "completion_tokens": completion,
            "prompt_tokens": prompt,
            "total_tokens": prompt + completion,
        }
        if cached is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        out.append(sse({"choices": [], **transcript.head, "usage": usage}))
    out.append(b"data: [DONE]\n\n")
    transcript.events += len(out)
    transcript.done = True
    await emit(b"".join(out))
