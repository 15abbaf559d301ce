"""A cheap, honest generation probe: a tiny streamed chat completion.

It asks for at most ``max_tokens`` (default 4) at temperature 0 and streams the reply, so it
measures time to first token and tokens per second rather than only total time. Reasoning
models may spend a tiny budget on reasoning tokens and return empty ``content`` with
``finish_reason == "length"``: that server *is* generating, and counts as such.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from fleetwatch.health._result import Observation
from fleetwatch.health._status import HealthStatus

DEFAULT_PROBE_PROMPT = "Reply with the single word OK."
DEFAULT_MAX_TOKENS = 4
#: However it is configured, a probe never asks for more than this many tokens.
MAX_TOKENS_CAP = 64
#: A stream's lines are small; one longer than this is not an LLM server talking.
MAX_LINE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ProbeReply:
    """What one probe saw."""

    first_token_s: float | None
    total_s: float
    content: str
    reasoning: str
    chunks: int
    finish_reason: str | None
    #: Tokens the server says it spent (prompt + completion), or our own count of chunks.
    tokens_spent: int
    #: Tokens generated (the server's count where it says, else the chunks received).
    generated: int = 0

    @property
    def tokens_per_s(self) -> float | None:
        """Generation speed after the first token, when there was more than one."""
        if self.first_token_s is None or self.chunks < 2:
            return None
        after_first = self.total_s - self.first_token_s
        return (self.chunks - 1) / after_first if after_first > 0 else None

    def judge(self, slow_first_token: float) -> Observation:
        """Healthy, degraded (empty reply, slow first token) or unhealthy (no token)."""
        metadata: dict[str, Any] = {
            "first_token_ms": None
            if self.first_token_s is None
            else round(self.first_token_s * 1000, 1),
            "tokens_per_s": None if self.tokens_per_s is None else round(self.tokens_per_s, 1),
            "finish_reason": self.finish_reason,
            "probe_tokens": self.tokens_spent,
        }
        if self.first_token_s is None:
            if self.content or self.reasoning:
                first = self.total_s
            else:
                return Observation(
                    HealthStatus.DEGRADED, "LLM returned an empty reply", metadata=metadata
                )
        else:
            first = self.first_token_s
        value = round(first * 1000, 1)
        if not self.content.strip() and not (self.reasoning and self.finish_reason == "length"):
            return Observation(
                HealthStatus.DEGRADED, "LLM returned an empty reply", value, "ms", metadata
            )
        what = "generating (reasoning)" if not self.content.strip() else "generating"
        if first > slow_first_token:
            return Observation(
                HealthStatus.DEGRADED,
                f"{what}, slow first token: {value:.0f}ms > {slow_first_token * 1000:.0f}ms",
                value,
                "ms",
                metadata,
            )
        return Observation(
            HealthStatus.HEALTHY, f"{what}: first token {value:.0f}ms", value, "ms", metadata
        )


class NoFirstToken(Exception):
    """The server took the request but produced no token in time."""


async def generate_probe(
    client: httpx.AsyncClient,
    base_url: str,
    *,
    model: str | None,
    first_token_timeout: float,
    total_timeout: float,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    prompt: str = DEFAULT_PROBE_PROMPT,
    headers: dict[str, str] | None = None,
) -> ProbeReply:
    """Stream one tiny chat completion; raise :class:`NoFirstToken` when nothing came in time."""
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max(1, min(max_tokens, MAX_TOKENS_CAP)),
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if model is not None:
        body["model"] = model
    started = time.perf_counter()
    state = _StreamState()
    try:
        async with asyncio.timeout(total_timeout):
            async with client.stream(
                "POST",
                f"{base_url}/v1/chat/completions",
                json=body,
                headers=headers or {},
                timeout=httpx.Timeout(total_timeout, read=first_token_timeout),
            ) as response:
                if response.status_code != 200:
                    text = (await response.aread())[:200].decode("utf-8", "replace")
                    raise ValueError(
                        f"POST /v1/chat/completions answered HTTP {response.status_code}: {text}"
                    )
                async for line in response.aiter_lines():
                    if state.take(line, started):
                        break
                    if state.first_token_s is None and (
                        time.perf_counter() - started > first_token_timeout
                    ):
                        raise NoFirstToken(f"no first token within {first_token_timeout:g}s")
    except (TimeoutError, httpx.ReadTimeout) as exc:
        if state.first_token_s is None:
            raise NoFirstToken(f"no first token within {first_token_timeout:g}s") from exc
        raise
    total = time.perf_counter() - started
    spent = state.usage_tokens if state.usage_tokens is not None else state.chunks
    return ProbeReply(
        state.first_token_s,
        total,
        "".join(state.content),
        "".join(state.reasoning),
        state.chunks,
        state.finish_reason,
        spent,
        state.completion_tokens if state.completion_tokens is not None else state.chunks,
    )


class _StreamState:
    """Accumulates server-sent events of a chat completion stream."""

    def __init__(self) -> None:
        self.first_token_s: float | None = None
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.chunks = 0
        self.finish_reason: str | None = None
        self.usage_tokens: int | None = None
        self.completion_tokens: int | None = None

    def take(self, line: str, started: float) -> bool:
        """Read one line; True at the end of the stream."""
        if len(line) > MAX_LINE_BYTES:
            raise ValueError("stream line too long: not a chat completion stream")
        if not line.startswith("data:"):
            return False
        data = line[5:].strip()
        if data == "[DONE]":
            return True
        try:
            event = json.loads(data)
        except ValueError:
            raise ValueError(f"stream event is not JSON: {data[:80]!r}") from None
        if not isinstance(event, dict):
            return False
        if isinstance(event.get("error"), dict | str):
            raise ValueError(f"server error in stream: {str(event['error'])[:200]}")
        usage = event.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("total_tokens"), int):
            self.usage_tokens = usage["total_tokens"]
            if isinstance(usage.get("completion_tokens"), int):
                self.completion_tokens = usage["completion_tokens"]
        choices = event.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return False
        choice = choices[0]
        raw_delta = choice.get("delta")
        delta: dict[str, Any] = raw_delta if isinstance(raw_delta, dict) else {}
        text = _text(delta.get("content"))
        thought = _text(delta.get("reasoning_content")) or _text(delta.get("reasoning"))
        if text or thought:
            self.chunks += 1
            if self.first_token_s is None:
                self.first_token_s = time.perf_counter() - started
            self.content.append(text)
            self.reasoning.append(thought)
        if isinstance(choice.get("finish_reason"), str):
            self.finish_reason = choice["finish_reason"]
        return False


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
