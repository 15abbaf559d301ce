"""The generic llm check over the OpenAI wire format.

These tests run a small OpenAI-compatible server written here, because what is under test is
the check's reading of the wire format and its verdicts (empty reply, slow, wrong model, API key),
which a real model cannot be made to produce on demand. A real llama.cpp server joins the suite
with the LLM adapters (issue #4), where the llamacpp adapter is tested against it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fleetwatch.health import CheckSettings, HealthStatus, run_check
from fleetwatch.health.checks import LlmCheck
from fleetwatch.health.checks._llm import MAX_TOKENS_CAP
from fleetwatch.lifecycle import AppServer


class OpenAiServer:
    """Behaviour switches and a log of the completion requests received."""

    def __init__(self) -> None:
        self.reply = "Hello!"
        self.delay = 0.0
        self.api_key: str | None = None
        self.requests: list[dict[str, Any]] = []

    def app(self) -> Starlette:
        async def models(request: Request) -> JSONResponse:
            if denied := self._denied(request):
                return denied
            return JSONResponse({"object": "list", "data": [{"id": "smollm2", "object": "model"}]})

        async def chat(request: Request) -> JSONResponse:
            if denied := self._denied(request):
                return denied
            body = await request.json()
            self.requests.append(body)
            await asyncio.sleep(self.delay)
            return JSONResponse(
                {
                    "choices": [{"message": {"role": "assistant", "content": self.reply}}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
                }
            )

        return Starlette(
            routes=[
                Route("/v1/models", models),
                Route("/v1/chat/completions", chat, methods=["POST"]),
            ]
        )

    def _denied(self, request: Request) -> JSONResponse | None:
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"error": {"message": "invalid api key"}}, 401)
        return None


@pytest.fixture
async def llm() -> AsyncIterator[tuple[OpenAiServer, str]]:
    """The server's switches and its base URL."""
    server = OpenAiServer()
    async with AppServer(server.app()) as running:
        yield server, running.url


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The shared pooled client."""
    async with httpx.AsyncClient(trust_env=False) as http:
        yield http


async def test_models_only_probe_spends_no_tokens(llm: Any, client: httpx.AsyncClient) -> None:
    """Without a prompt the check lists models and never asks for a completion."""
    server, url = llm
    result = await run_check(LlmCheck(url, client=client, model="smollm2"), CheckSettings("llm"))
    assert result.status is HealthStatus.HEALTHY
    assert result.metadata["models"] == ["smollm2"]
    assert server.requests == []


async def test_generation_probe_is_capped_and_deterministic(
    llm: Any, client: httpx.AsyncClient
) -> None:
    """A generation probe asks at temperature 0 with max_tokens capped, and reports usage."""
    server, url = llm
    check = LlmCheck(url, client=client, model="smollm2", prompt="Say hi", max_tokens=10_000)
    result = await run_check(check, CheckSettings("llm"))
    assert result.status is HealthStatus.HEALTHY
    assert result.metadata["tokens_used"] == 7
    [sent] = server.requests
    assert sent["temperature"] == 0
    assert sent["max_tokens"] == MAX_TOKENS_CAP
    assert sent["messages"] == [{"role": "user", "content": "Say hi"}]


async def test_empty_reply_is_degraded(llm: Any, client: httpx.AsyncClient) -> None:
    """An empty completion is degraded: the server answers but does not generate."""
    server, url = llm
    server.reply = "   "
    check = LlmCheck(url, client=client, model="smollm2", prompt="Say hi")
    result = await run_check(check, CheckSettings("llm"))
    assert result.status is HealthStatus.DEGRADED
    assert result.output == "LLM returned an empty reply"


async def test_slow_reply_is_degraded(llm: Any, client: httpx.AsyncClient) -> None:
    """A reply slower than slow_after is degraded."""
    server, url = llm
    server.delay = 0.2
    check = LlmCheck(url, client=client, model="smollm2", prompt="Say hi", slow_after=0.05)
    result = await run_check(check, CheckSettings("llm"))
    assert result.status is HealthStatus.DEGRADED
    assert result.output.startswith("LLM slow")


async def test_missing_model_is_unhealthy(llm: Any, client: httpx.AsyncClient) -> None:
    """A server that does not serve the expected model fails, listing what it serves."""
    _, url = llm
    result = await run_check(LlmCheck(url, client=client, model="llama-70b"), CheckSettings("llm"))
    assert result.status is HealthStatus.UNHEALTHY
    assert result.output == "model 'llama-70b' is not served (serving: smollm2)"


async def test_api_key_is_sent(llm: Any, client: httpx.AsyncClient) -> None:
    """Hosted providers need a key: it is sent as a bearer token; without it the check fails."""
    server, url = llm
    server.api_key = "sk-test"
    with_key = LlmCheck(url, client=client, api_key="sk-test")
    without = LlmCheck(url, client=client)
    assert (await run_check(with_key, CheckSettings("llm"))).status is HealthStatus.HEALTHY
    result = await run_check(without, CheckSettings("llm"))
    assert result.status is HealthStatus.UNHEALTHY
    assert result.output.startswith("HTTPStatusError")


async def test_malformed_reply_names_what_was_wrong(client: httpx.AsyncClient) -> None:
    """A server that answers /v1/models with something other than a model list fails clearly."""

    async def not_models(request: Request) -> JSONResponse:
        return JSONResponse(["not", "an", "object"])

    app = Starlette(routes=[Route("/v1/models", not_models)])
    async with AppServer(app) as server:
        result = await run_check(LlmCheck(server.url, client=client), CheckSettings("llm"))
    assert result.status is HealthStatus.UNHEALTHY
    assert result.output == "ValueError: GET /v1/models: expected a JSON object, got list"
