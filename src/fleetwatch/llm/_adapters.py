"""One adapter per LLM server family: is it loading, ready or dead, and how loaded is it.

What each family does, and why the adapter reads it that way:

- ``llamacpp``: ``GET /health`` answers 503 ``{"error": {"message": "Loading model"}}`` while
  the model loads and 200 ``{"status": "ok"}`` once ready. ``/metrics`` (with ``--metrics``)
  has ``llamacpp:requests_processing`` / ``requests_deferred``, ``tokens_predicted_total``, and
  in older builds ``kv_cache_usage_ratio``.
- ``vllm``: ``GET /health`` is 200 when the engine runs and 503 (or 500) when it died; the API
  server may accept connections before its model is loaded, so readiness also requires
  ``/v1/models`` to list the model, and the registry's ``startup_grace`` covers the load.
  Load: ``vllm:num_requests_waiting`` / ``running``, ``vllm:kv_cache_usage_perc`` (a 0-1
  fraction despite its name; ``gpu_cache_usage_perc`` in older versions),
  ``vllm:generation_tokens_total``.
- ``tgi``: ``GET /health`` 200 when it can generate, 503 otherwise. Load: ``tgi_queue_size``,
  ``tgi_batch_current_size``; generated tokens from ``tgi_request_generated_tokens_sum``.
- ``sglang``: ``GET /health`` 200 once the scheduler is up. Load: ``sglang:num_queue_reqs``,
  ``sglang:num_running_reqs``, ``sglang:token_usage`` (KV pool use, 0-1),
  ``sglang:generation_tokens_total``.
- ``ollama``: no ``/health`` and no ``/metrics``; ``GET /`` is 200 even with no model loaded.
  ``/api/tags`` lists the models it can serve, ``/api/ps`` the ones in memory: a model that is
  installed but not loaded is ready, and its first generation is slow (it loads lazily).
- ``openai`` (generic): ``GET /v1/models`` must list the expected model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

import httpx

from fleetwatch.llm._prometheus import MetricsPage

#: Replies read for readiness are small; a larger one is cut here before parsing.
MAX_REPLY_BYTES = 256 * 1024


class Phase(StrEnum):
    """Where a server stands, as its own endpoints tell it."""

    LOADING = "loading"
    READY = "ready"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Readiness:
    """One look at a server's own readiness signals."""

    phase: Phase
    detail: str
    models: tuple[str, ...] = ()
    #: The model is served but not in memory yet (Ollama): the next generation will be slow.
    cold: bool = False


@dataclass(frozen=True, slots=True)
class LoadSignals:
    """Load as the server reports it; ``None`` where the family does not say."""

    waiting: float | None = None
    running: float | None = None
    #: KV-cache use as a 0-1 fraction.
    kv_cache_usage: float | None = None
    busy_slots: float | None = None
    total_slots: float | None = None
    #: The server's own generated-token counter (passive evidence that it generates).
    generated_tokens_total: float | None = None

    def as_load(self) -> dict[str, float]:
        """The figures that are known, for the registry's load channel."""
        figures = {
            "waiting": self.waiting,
            "running": self.running,
            "kv_cache_usage": self.kv_cache_usage,
            "busy_slots": self.busy_slots,
            "total_slots": self.total_slots,
            "generated_tokens_total": self.generated_tokens_total,
        }
        return {k: float(v) for k, v in figures.items() if v is not None}

    @property
    def in_flight(self) -> float | None:
        """Requests running or waiting, when the server says."""
        if self.running is None and self.waiting is None and self.busy_slots is None:
            return None
        running = self.running if self.running is not None else self.busy_slots or 0.0
        return running + (self.waiting or 0.0)


class ServerAdapter:
    """The generic OpenAI-compatible adapter; subclasses override what their family differs in."""

    kind: ClassVar[str] = "openai"
    #: Where Prometheus metrics live, or ``None`` when the family has none.
    metrics_path: ClassVar[str | None] = None

    async def readiness(
        self, client: httpx.AsyncClient, base_url: str, model: str | None, timeout: float
    ) -> Readiness:
        """Ready when ``/v1/models`` answers and lists ``model`` (if one is expected)."""
        return await self._models_listing(client, base_url, model, timeout)

    def load(self, page: MetricsPage) -> LoadSignals:
        """Load from a metrics page (the generic server has none)."""
        del page
        return LoadSignals()

    async def slots(
        self, client: httpx.AsyncClient, base_url: str, timeout: float
    ) -> tuple[float, float] | None:
        """(busy, total) slots where the family exposes them apart from its metrics."""
        del client, base_url, timeout
        return None

    async def _models_listing(
        self, client: httpx.AsyncClient, base_url: str, model: str | None, timeout: float
    ) -> Readiness:
        response = await client.get(f"{base_url}/v1/models", timeout=timeout)
        if response.status_code != 200:
            return Readiness(Phase.DEAD, f"GET /v1/models answered HTTP {response.status_code}")
        body = _json_object(response, "GET /v1/models")
        data = body.get("data")
        if not isinstance(data, list):
            raise ValueError("GET /v1/models: expected an object with a `data` list")
        models = tuple(str(m.get("id")) for m in data if isinstance(m, dict))[:50]
        if model is not None and model not in models:
            served = ", ".join(models) or "none"
            return Readiness(Phase.LOADING, f"model {model!r} not listed yet (serving: {served})")
        return Readiness(Phase.READY, "models listed", models)


class LlamaCppAdapter(ServerAdapter):
    """llama.cpp's ``llama-server``."""

    kind = "llamacpp"
    metrics_path = "/metrics"

    async def readiness(
        self, client: httpx.AsyncClient, base_url: str, model: str | None, timeout: float
    ) -> Readiness:
        del model  # llama-server serves one model, whatever name the request gives
        response = await client.get(f"{base_url}/health", timeout=timeout)
        if response.status_code == 200:
            return Readiness(Phase.READY, "GET /health: ok")
        message = _error_message(response)
        if response.status_code == 503 and "loading" in message.lower():
            return Readiness(Phase.LOADING, f"GET /health: {message}")
        return Readiness(Phase.DEAD, f"GET /health answered HTTP {response.status_code}: {message}")

    def load(self, page: MetricsPage) -> LoadSignals:
        return LoadSignals(
            waiting=page.total("llamacpp:requests_deferred"),
            running=page.total("llamacpp:requests_processing"),
            kv_cache_usage=page.highest("llamacpp:kv_cache_usage_ratio"),
            generated_tokens_total=page.total("llamacpp:tokens_predicted_total"),
        )

    async def slots(
        self, client: httpx.AsyncClient, base_url: str, timeout: float
    ) -> tuple[float, float] | None:
        """``GET /slots``: one entry per slot with ``is_processing`` (404 when disabled)."""
        response = await client.get(f"{base_url}/slots", timeout=timeout)
        if response.status_code != 200:
            return None
        try:
            body = json.loads(response.content[:MAX_REPLY_BYTES])
        except ValueError:
            return None
        if not isinstance(body, list):
            return None
        busy = sum(1 for slot in body if isinstance(slot, dict) and slot.get("is_processing"))
        return float(busy), float(len(body))


class _HealthThenModels(ServerAdapter):
    """``GET /health`` must be 200 (else the engine is dead), then ``/v1/models`` must list
    the model (else it is still loading)."""

    metrics_path = "/metrics"

    async def readiness(
        self, client: httpx.AsyncClient, base_url: str, model: str | None, timeout: float
    ) -> Readiness:
        response = await client.get(f"{base_url}/health", timeout=timeout)
        if response.status_code != 200:
            return Readiness(
                Phase.DEAD, f"GET /health answered HTTP {response.status_code}: engine not running"
            )
        return await self._models_listing(client, base_url, model, timeout)


class VllmAdapter(_HealthThenModels):
    """vLLM's OpenAI-compatible API server."""

    kind = "vllm"

    def load(self, page: MetricsPage) -> LoadSignals:
        return LoadSignals(
            waiting=page.total("vllm:num_requests_waiting"),
            running=page.total("vllm:num_requests_running"),
            kv_cache_usage=page.highest("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
            generated_tokens_total=page.total("vllm:generation_tokens_total"),
        )


class TgiAdapter(ServerAdapter):
    """Hugging Face text-generation-inference."""

    kind = "tgi"
    metrics_path = "/metrics"

    async def readiness(
        self, client: httpx.AsyncClient, base_url: str, model: str | None, timeout: float
    ) -> Readiness:
        del model
        response = await client.get(f"{base_url}/health", timeout=timeout)
        if response.status_code == 200:
            return Readiness(Phase.READY, "GET /health: ok")
        return Readiness(Phase.DEAD, f"GET /health answered HTTP {response.status_code}")

    def load(self, page: MetricsPage) -> LoadSignals:
        return LoadSignals(
            waiting=page.total("tgi_queue_size"),
            running=page.total("tgi_batch_current_size"),
            generated_tokens_total=page.total("tgi_request_generated_tokens_sum"),
        )


class SglangAdapter(_HealthThenModels):
    """SGLang's server (metrics need ``--enable-metrics``)."""

    kind = "sglang"

    def load(self, page: MetricsPage) -> LoadSignals:
        return LoadSignals(
            waiting=page.total("sglang:num_queue_reqs"),
            running=page.total("sglang:num_running_reqs"),
            kv_cache_usage=page.highest("sglang:token_usage"),
            generated_tokens_total=page.total("sglang:generation_tokens_total"),
        )


class OllamaAdapter(ServerAdapter):
    """Ollama: ``/api/tags`` for what it can serve, ``/api/ps`` for what is loaded."""

    kind = "ollama"

    async def readiness(
        self, client: httpx.AsyncClient, base_url: str, model: str | None, timeout: float
    ) -> Readiness:
        tags = await client.get(f"{base_url}/api/tags", timeout=timeout)
        if tags.status_code != 200:
            return Readiness(Phase.DEAD, f"GET /api/tags answered HTTP {tags.status_code}")
        installed = _ollama_names(_json_object(tags, "GET /api/tags"))
        if model is not None and not _ollama_has(installed, model):
            listed = ", ".join(installed) or "none"
            return Readiness(Phase.DEAD, f"model {model!r} is not installed (installed: {listed})")
        ps = await client.get(f"{base_url}/api/ps", timeout=timeout)
        loaded = _ollama_names(_json_object(ps, "GET /api/ps")) if ps.status_code == 200 else ()
        cold = model is not None and not _ollama_has(loaded, model)
        detail = "installed, not loaded yet (first generation loads it)" if cold else "loaded"
        return Readiness(Phase.READY, f"model {detail}", installed, cold=cold)


def _ollama_names(body: Mapping[str, Any]) -> tuple[str, ...]:
    models = body.get("models")
    if not isinstance(models, list):
        raise ValueError("Ollama: expected an object with a `models` list")
    return tuple(str(m.get("name") or m.get("model")) for m in models if isinstance(m, dict))[:200]


def _ollama_has(names: tuple[str, ...], model: str) -> bool:
    """Ollama names carry a tag; ``llama3`` means ``llama3:latest``."""
    wanted = model if ":" in model else f"{model}:latest"
    return wanted in names or model in names


ADAPTERS: dict[str, type[ServerAdapter]] = {
    adapter.kind: adapter
    for adapter in (
        ServerAdapter,
        LlamaCppAdapter,
        VllmAdapter,
        TgiAdapter,
        SglangAdapter,
        OllamaAdapter,
    )
}
KINDS = tuple(ADAPTERS)


def adapter_for(kind: str) -> ServerAdapter:
    """The adapter for a server family, or a ValueError naming the known ones."""
    try:
        return ADAPTERS[kind]()
    except KeyError:
        raise ValueError(f"unknown LLM server kind {kind!r}; known: {', '.join(KINDS)}") from None


def _json_object(response: httpx.Response, what: str) -> Mapping[str, Any]:
    try:
        body = json.loads(response.content[:MAX_REPLY_BYTES])
    except ValueError:
        raise ValueError(f"{what}: the reply is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError(f"{what}: expected a JSON object, got {type(body).__name__}")
    return body


def _error_message(response: httpx.Response) -> str:
    """llama.cpp's ``{"error": {"message": ...}}``, or the start of the body."""
    try:
        body = json.loads(response.content[:MAX_REPLY_BYTES])
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])[:200]
        if isinstance(error, str):
            return error[:200]
    return response.text[:200]
