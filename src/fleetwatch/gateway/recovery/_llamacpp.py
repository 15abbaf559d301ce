"""Continuing a generation on a llama.cpp server, from token ids.

The prompt is rendered by the server's own chat template (``POST /apply-template``) and
tokenized as its chat route would (``POST /tokenize``, special tokens on); the text the
client already received is tokenized apart from it, so no token can merge across the
boundary between the prompt and the reply. Both go to ``POST /completion`` as one array of
token ids, with ``max_tokens`` reduced by what was sent; its native stream is read back
with its token ids (``return_tokens``), so a second seam continues from exact ids.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fleetwatch.gateway._admission import parse_retry_after
from fleetwatch.gateway.recovery._policy import CHAT
from fleetwatch.gateway.recovery._transcript import (
    SseEvents,
    data_of,
    event_payload,
)
from fleetwatch.http1 import Response, UpstreamPool

#: Sampling and stopping fields a continuation keeps from the client's request.
_KEPT_FIELDS = (
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "repeat_penalty",
    "repeat_last_n",
    "dry_multiplier",
    "dry_base",
    "dry_allowed_length",
    "dry_penalty_last_n",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "xtc_probability",
    "xtc_threshold",
    "logit_bias",
    "ignore_eos",
)
_JSON = b"content-type: application/json\r\n"


class ContinuationFailed(Exception):
    """The server answered the continuation with an error: it cannot take it (an old build
    without ``/apply-template``, a prompt over its context); says nothing of its health."""


class ContinuerBusy(ContinuationFailed):
    """The server answered 429 or 503: busy or draining, like any request's refusal."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


async def call(
    pool: UpstreamPool, base_url: str, path: str, body: dict[str, Any], auth: bytes
) -> Any:
    """POST ``body`` as JSON to ``base_url`` + ``path``; the decoded reply. A transport
    failure raises :class:`~fleetwatch.http1.UpstreamError` (a fault of the server)."""
    encoded = json.dumps(body).encode()
    response = await pool.request(base_url, "POST", path, _JSON + auth, encoded)
    try:
        content = await response.read()
    finally:
        response.close()
    refused(response, path, content)
    try:
        return json.loads(content)
    except ValueError:
        raise ContinuationFailed(f"{path} answered something that is not JSON") from None


def refused(response: Response, path: str, content: bytes) -> None:
    """Raise what a non-200 answer to ``path`` means for a continuation."""
    if response.status in (429, 503):
        retry_after = parse_retry_after(response.header("retry-after"))
        raise ContinuerBusy(f"{path} answered HTTP {response.status}", retry_after)
    if response.status != 200:
        raise ContinuationFailed(f"{path} answered HTTP {response.status}: {content[:200]!r}")


async def tokenize(
    pool: UpstreamPool, base_url: str, text: str, auth: bytes, *, prompt: bool
) -> list[int]:
    """``text``'s token ids: as a prompt (BOS where the model adds one, special tokens read
    as such), or as generated text (neither)."""
    reply = await call(
        pool,
        base_url,
        "/tokenize",
        {"content": text, "add_special": prompt, "parse_special": prompt},
        auth,
    )
    tokens = reply.get("tokens") if isinstance(reply, dict) else None
    if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
        raise ContinuationFailed("/tokenize answered without a list of token ids")
    return tokens


async def prompt_ids(
    pool: UpstreamPool, base_url: str, path: str, payload: Mapping[str, Any], auth: bytes
) -> list[int]:
    """The request's prompt as the server's chat or completion route tokenizes it."""
    if path == CHAT:
        template: dict[str, Any] = {"messages": payload["messages"]}
        if isinstance(payload.get("chat_template_kwargs"), dict):
            template["chat_template_kwargs"] = payload["chat_template_kwargs"]
        rendered = await call(pool, base_url, "/apply-template", template, auth)
        text = rendered.get("prompt") if isinstance(rendered, dict) else None
        if not isinstance(text, str):
            raise ContinuationFailed("/apply-template answered without a prompt")
        return await tokenize(pool, base_url, text, auth, prompt=True)
    prompt = payload["prompt"]
    if isinstance(prompt, list):
        return list(prompt)
    return await tokenize(pool, base_url, prompt, auth, prompt=True)


def max_tokens(payload: Mapping[str, Any]) -> int | None:
    """The client's limit on generated tokens, if it set one."""
    for name in ("max_completion_tokens", "max_tokens", "n_predict"):
        value = payload.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def stop_strings(payload: Mapping[str, Any]) -> list[str]:
    """The request's stop strings."""
    stop = payload.get("stop")
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list):
        return [s for s in stop if isinstance(s, str) and s]
    return []


def continuation_body(
    payload: Mapping[str, Any], tokens: list[int], generated: int
) -> dict[str, Any]:
    """The ``/completion`` request that continues ``payload``'s reply after ``generated``
    tokens, from ``tokens`` (the prompt's ids, then the reply's)."""
    body: dict[str, Any] = {
        "prompt": tokens,
        "stream": True,
        "return_tokens": True,
        "cache_prompt": True,
        "stop": stop_strings(payload),
    }
    for name in _KEPT_FIELDS:
        if name in payload:
            body[name] = payload[name]
    limit = max_tokens(payload)
    body["n_predict"] = -1 if limit is None else max(0, limit - generated)
    return body


class NativeStreamReader:
    """Reads llama.cpp's native ``/completion`` stream: its text with token ids, its end."""

    def __init__(self) -> None:
        self._events = SseEvents()
        #: Ids whose text the server holds back (a partial stop string, a partial UTF-8
        #: character): they reach the client with the text that follows, or never.
        self._held: list[int] = []
        self.predicted = 0
        self.cached: int | None = None
        self.finish_reason: str | None = None

    def feed(self, chunk: bytes) -> list[tuple[str, list[int]]]:
        """The pieces of text in ``chunk`` (each with its token ids), in order."""
        pieces = (self._read(event) for event in self._events.feed(chunk))
        return [piece for piece in pieces if piece is not None]

    def _read(self, event: bytes) -> tuple[str, list[int]] | None:
        data = data_of(event)
        if data is None or data == b"[DONE]":
            return None
        payload = event_payload(data)
        tokens = payload.get("tokens")
        ids = [t for t in tokens if isinstance(t, int)] if isinstance(tokens, list) else []
        if payload.get("stop") is True:
            self.predicted = int(payload.get("tokens_predicted") or 0)
            timings = payload.get("timings")
            if isinstance(timings, dict) and isinstance(timings.get("cache_n"), int):
                self.cached = timings["cache_n"]
            self.finish_reason = "length" if payload.get("stop_type") == "limit" else "stop"
        text = payload.get("content")
        if not isinstance(text, str) or not text:
            self._held.extend(ids)  # no text yet for these ids
            return None
        ids, self._held = self._held + ids, []
        return text, ids
