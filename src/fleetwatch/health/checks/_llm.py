"""``llm`` check for any OpenAI-compatible server: list models, optionally generate a little.

``GET /v1/models`` proves the server answers and (with ``model`` set) serves the expected model.
With a ``prompt`` it also asks for a tiny chat completion at temperature 0 with ``max_tokens``
capped, so a health check can never run up a token bill; an empty reply is degraded, as is a
reply slower than ``slow_after`` (10 s by default).
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from fleetwatch.health._result import Observation
from fleetwatch.health._status import HealthStatus
from fleetwatch.health.checks._latency import timed_observation

DEFAULT_SLOW_AFTER = 10.0
DEFAULT_MAX_TOKENS = 8
#: However it is configured, a probe never asks for more than this many tokens.
MAX_TOKENS_CAP = 64


class LlmCheck:
    """Probe an OpenAI-compatible server at ``base_url`` (e.g. ``http://127.0.0.1:8000``)."""

    component_type = "llm"
    measurement = "responseTime"

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.AsyncClient,
        timeout: float = 5.0,
        model: str | None = None,
        prompt: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        api_key: str | None = None,
        slow_after: float | None = DEFAULT_SLOW_AFTER,
    ) -> None:
        if prompt is not None and model is None:
            raise ValueError("an llm check with a prompt needs the model to ask")
        self.base_url = base_url.rstrip("/")
        self._client = client
        self._timeout = timeout
        self._model = model
        self._prompt = prompt
        self._max_tokens = max(1, min(max_tokens, MAX_TOKENS_CAP))
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._slow_after = slow_after

    async def check(self) -> Observation:
        started = time.perf_counter()
        models = await self._models()
        metadata: dict[str, Any] = {"models": models[:20]}
        if self._model is not None and self._model not in models:
            served = ", ".join(models) or "none"
            return Observation(
                HealthStatus.UNHEALTHY,
                f"model {self._model!r} is not served (serving: {served})",
                metadata=metadata,
            )
        if self._prompt is None:
            elapsed = time.perf_counter() - started
            return timed_observation("LLM (models only)", elapsed, self._slow_after, metadata)
        text, usage = await self._generate()
        elapsed = time.perf_counter() - started
        metadata.update(response_length=len(text), tokens_used=usage)
        if not text.strip():
            return Observation(
                HealthStatus.DEGRADED,
                "LLM returned an empty reply",
                round(elapsed * 1000, 3),
                "ms",
                metadata,
            )
        return timed_observation("LLM", elapsed, self._slow_after, metadata)

    async def _models(self) -> list[str]:
        response = await self._client.get(
            f"{self.base_url}/v1/models", headers=self._headers, timeout=self._timeout
        )
        response.raise_for_status()
        data = _json(response).get("data")
        if not isinstance(data, list):
            raise ValueError("GET /v1/models: expected an object with a `data` list of models")
        return [str(item.get("id")) for item in data if isinstance(item, dict)]

    async def _generate(self) -> tuple[str, int]:
        response = await self._client.post(
            f"{self.base_url}/v1/chat/completions",
            headers=self._headers,
            timeout=self._timeout,
            json={
                "model": self._model,
                "messages": [{"role": "user", "content": self._prompt}],
                "temperature": 0,
                "max_tokens": self._max_tokens,
            },
        )
        response.raise_for_status()
        body = _json(response)
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ValueError("POST /v1/chat/completions: expected a `choices` list")
        message = choices[0].get("message")
        text = str(message.get("content") or "") if isinstance(message, dict) else ""
        usage = body.get("usage")
        tokens = int(usage.get("total_tokens") or 0) if isinstance(usage, dict) else 0
        return text, tokens


def _json(response: httpx.Response) -> dict[str, Any]:
    """The body as a JSON object, or a ValueError that says what came instead."""
    try:
        body = response.json()
    except ValueError:
        raise ValueError(
            f"{response.request.method} {response.request.url.path}: the reply is not JSON"
        ) from None
    if not isinstance(body, dict):
        raise ValueError(
            f"{response.request.method} {response.request.url.path}: expected a JSON object, "
            f"got {type(body).__name__}"
        )
    return body
