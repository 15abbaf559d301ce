"""Token counts from replies: ``usage`` in a whole reply or in a stream's last events.

The gateway asks streamed requests upstream for ``stream_options.include_usage`` so their
token counts are always known, and removes the usage it added from the client's stream when
the client did not ask for it. Events without usage pass through untouched, unparsed.
"""

from __future__ import annotations

import json
from typing import Any

from fleetwatch.gateway._report import Usage

#: An unterminated event longer than this is passed on as it is (not SSE as we know it).
MAX_PENDING = 1 << 20
_MARKERS = (b'"usage"', b'"timings"')


def usage_of(reply: Any) -> Usage | None:
    """The token counts in a reply object (OpenAI ``usage``; llama.cpp ``timings``)."""
    if not isinstance(reply, dict):
        return None
    usage, timings = reply.get("usage"), reply.get("timings")
    if not isinstance(usage, dict) and not isinstance(timings, dict):
        return None
    usage = usage if isinstance(usage, dict) else {}
    timings = timings if isinstance(timings, dict) else {}
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if cached is None:
        cached = timings.get("cache_n")
    prompt = usage.get("prompt_tokens")
    if prompt is None and "prompt_n" in timings:
        prompt = int(timings["prompt_n"]) + int(timings.get("cache_n", 0))
    completion = usage.get("completion_tokens", timings.get("predicted_n"))
    return Usage(prompt=_count(prompt), completion=_count(completion), cached=_count(cached))


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


def merge(old: Usage, new: Usage | None) -> Usage:
    """``new``'s figures where it has them, ``old``'s elsewhere."""
    if new is None:
        return old
    return Usage(
        prompt=new.prompt if new.prompt is not None else old.prompt,
        completion=new.completion if new.completion is not None else old.completion,
        cached=new.cached if new.cached is not None else old.cached,
    )


_DECODER = json.JSONDecoder()


def whole_usage(body: bytes, content_type: str | None) -> Usage | None:
    """The counts in a whole JSON reply.

    Only the ``usage`` and ``timings`` objects are decoded, found by their last key (a key
    is an unescaped quoted name: one inside generated text is escaped): parsing the whole
    reply cost the gateway more than all its routing. Anything unexpected falls back to it."""
    if not content_type or "json" not in content_type or b'"usage"' not in body:
        return None
    try:
        text = body.decode()
        usage, timings = _object_after(text, '"usage"'), _object_after(text, '"timings"')
        if usage is _MISSING or timings is _MISSING:
            return usage_of(json.loads(text))
        return usage_of({"usage": usage, "timings": timings})
    except ValueError:
        return None


_MISSING: Any = object()


def _object_after(text: str, key: str) -> Any:
    """The JSON object after the last ``key:`` in ``text``; None when the key is absent;
    ``_MISSING`` when what follows is not an object."""
    at = text.rfind(key)
    if at < 0:
        return None
    at += len(key)
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    if at >= len(text) or text[at] != ":":
        return _MISSING
    at += 1
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    try:
        value, _ = _DECODER.raw_decode(text, at)
    except ValueError:
        return _MISSING
    return value if isinstance(value, dict) else _MISSING


class StreamUsage:
    """Reads an SSE stream as it is relayed: keeps its usage; with ``strip``, drops it."""

    def __init__(self, *, strip: bool) -> None:
        self.strip = strip
        self.usage = Usage()
        self.events = 0
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """What to relay of ``chunk`` (held back: the end of an event not yet complete)."""
        self.events += chunk.count(b"data: ")
        if not self._pending and chunk.endswith(b"\n\n") and not any(m in chunk for m in _MARKERS):
            return chunk  # the common case: whole events, none with usage
        data = self._pending + chunk
        complete, separator, rest = data.rpartition(b"\n\n")
        if not separator:
            if len(data) > MAX_PENDING:
                self._pending = b""
                return data
            self._pending = data
            return b""
        self._pending = rest
        return b"".join(self._event(event) for event in (complete + b"\n\n").split(b"\n\n")[:-1])

    def flush(self) -> bytes:
        """What is still held back at the end of the stream."""
        pending, self._pending = self._pending, b""
        return pending

    def _event(self, event: bytes) -> bytes:
        if not any(m in event for m in _MARKERS) or not event.startswith(b"data: "):
            return event + b"\n\n"
        try:
            payload = json.loads(event[6:])
        except ValueError:
            return event + b"\n\n"
        self.usage = merge(self.usage, usage_of(payload))
        if not self.strip or not isinstance(payload, dict) or "usage" not in payload:
            return event + b"\n\n"
        if not payload.get("choices"):
            return b""  # the usage-only event the client did not ask for
        payload.pop("usage")
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
