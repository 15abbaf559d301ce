"""What a client has received of a streamed reply, read from the events as they are relayed.

The gateway must know, at any moment, exactly the text the client holds (to continue from
it, with nothing lost or repeated), the stream's identity (its ``id``, ``created``, ``model``:
the continuation speaks with the same voice), whether a final event or ``[DONE]`` went out,
and the token ids of what it holds where a server said them. Error events are withheld: when
the stream can be continued, the client never sees the failure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

#: An unterminated event longer than this is not SSE as servers send it: the stream is broken.
MAX_EVENT_BYTES = 1 << 20
#: Characters of received text kept to check stop strings straddling a seam.
TAIL_CHARS = 512
#: What a chat delta may carry for its reply to be spliced as text.
_TEXT_KEYS = frozenset({"role", "content"})


class BrokenStream(Exception):
    """The upstream stream broke after the first byte (an error event, an oversized event)."""


@dataclass(slots=True)
class Transcript:
    """The client's side of one streamed reply, across every instance that served it."""

    chat: bool
    #: ``id``, ``created``, ``model``, ``system_fingerprint`` and ``object`` of the first event.
    head: dict[str, Any] = field(default_factory=dict)
    #: What the client received, in order: pieces of text (from a server that gave no token
    #: ids) or token ids (a continuation's, exact).
    segments: list[str | list[int]] = field(default_factory=list)
    #: Why this reply cannot be spliced (it carries more than text); None while it can.
    unspliceable: str | None = None
    #: The last characters received.
    tail: str = ""
    received_chars: int = 0
    finish_reason: str | None = None
    done: bool = False
    #: Events relayed to the client.
    events: int = 0

    def received(self, text: str, ids: list[int] | None = None) -> None:
        """``text`` reached the client (with its token ids, when known)."""
        if not text:
            return
        self.received_chars += len(text)
        self.tail = (self.tail + text)[-TAIL_CHARS:]
        if ids is None:
            self.segments.append(text)  # joined when tokenized, not here (once per event)
        elif self.segments and isinstance(self.segments[-1], list):
            self.segments[-1].extend(ids)
        else:
            self.segments.append(list(ids))

    @property
    def complete(self) -> bool:
        """Whether the reply ended: a finish reason went out (only [DONE] may be missing)."""
        return self.finish_reason is not None

    def chunk(self, delta_text: str | None = None, finish: str | None = None) -> dict[str, Any]:
        """An event of this stream in the client's format, carrying ``delta_text``/``finish``."""
        choice: dict[str, Any]
        if self.chat:
            delta: dict[str, Any] = {} if delta_text is None else {"content": delta_text}
            choice = {"finish_reason": finish, "index": 0, "delta": delta}
        else:
            choice = {"text": delta_text or "", "index": 0, "logprobs": None}
            choice["finish_reason"] = finish
        return {"choices": [choice], **self.head}


class SseEvents:
    """Whole SSE events out of a stream's chunks as they come (a split one is held)."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """The events ``chunk`` completes, without their blank-line ends."""
        data = self._pending + chunk
        complete, separator, rest = data.rpartition(b"\n\n")
        if not separator:
            if len(data) > MAX_EVENT_BYTES:
                raise BrokenStream("an event longer than 1 MiB")
            self._pending = data
            return []
        self._pending = rest
        return [event for event in complete.split(b"\n\n") if event]


class OpenAIStreamReader:
    """Reads an OpenAI-style SSE stream (chat or text completion) into a :class:`Transcript`,
    and says which bytes to relay: whole events only, error events withheld."""

    def __init__(self, transcript: Transcript) -> None:
        self.transcript = transcript
        #: Why the stream broke (an error event, a malformed event); None while it is sound.
        self.broken: str | None = None
        self._events = SseEvents()

    def feed(self, chunk: bytes) -> bytes:
        """The complete events in ``chunk`` (with what was held), to relay as they are. On an
        error event (or anything that is not an event), :attr:`broken` says why, and neither
        it nor what follows is returned."""
        if self.broken is not None:
            return b""
        relayed: list[bytes] = []
        try:
            for event in self._events.feed(chunk):
                self._read(event)
                relayed.append(event + b"\n\n")
        except BrokenStream as exc:
            self.broken = str(exc)
        return b"".join(relayed)

    def _read(self, event: bytes) -> None:
        transcript = self.transcript
        data = data_of(event)
        if data is None:
            return  # a comment or another field: relayed, says nothing
        if data == b"[DONE]":
            transcript.done = True
            transcript.events += 1
            return
        payload = event_payload(data)
        transcript.events += 1
        if not transcript.head:
            transcript.head = {
                key: payload[key]
                for key in ("created", "id", "model", "system_fingerprint", "object")
                if key in payload
            }
        choices = payload.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return  # the usage event
        self._read_choice(choices[0])

    def _read_choice(self, choice: dict[str, Any]) -> None:
        transcript = self.transcript
        if transcript.chat:
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(delta, dict) and transcript.unspliceable is None:
                extra = sorted(k for k, v in delta.items() if k not in _TEXT_KEYS and v)
                if extra:  # reasoning or tool calls: a continuation from text would lose them
                    transcript.unspliceable = f"the reply carries {', '.join(extra)}"
        else:
            text = choice.get("text")
        if isinstance(text, str):
            transcript.received(text)
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            transcript.finish_reason = reason


def event_payload(data: bytes) -> dict[str, Any]:
    """An event's JSON object; :class:`BrokenStream` for an error event or anything else."""
    try:
        payload = json.loads(data)
    except ValueError:
        raise BrokenStream("an event that is not JSON") from None
    if not isinstance(payload, dict):
        raise BrokenStream("an event that is not a JSON object")
    if payload.get("error") is not None:
        raise BrokenStream(_error_message(payload["error"]))
    return payload


def data_of(event: bytes) -> bytes | None:
    """The ``data:`` field of one SSE event (None for a comment or another field)."""
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            return line[5:].strip()
    return None


def _error_message(error: Any) -> str:
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return f"the upstream sent an error event: {error['message']}"
    return "the upstream sent an error event"
