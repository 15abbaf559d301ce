"""The generation probe against the real llama-server, and the replies it must judge right."""

from __future__ import annotations

import json

import httpx
import pytest

from fleetwatch.health._status import HealthStatus
from fleetwatch.llm._probe import NoFirstToken, ProbeReply, generate_probe
from fleetwatch_testing.llama import LlamaServer


def streamed(*events: dict[str, object]) -> httpx.AsyncClient:
    """A server that streams these chat-completion chunks as SSE.

    Only for reply shapes no server here produces (a reasoning model's reasoning-only reply,
    an empty reply): SmolLM2 always answers with content.
    """
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


def chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


async def test_probe_measures_a_real_generation(llama_server: LlamaServer) -> None:
    """Against llama-server: first token timed, content streamed, tokens from its usage."""
    async with httpx.AsyncClient() as client:
        reply = await generate_probe(
            client, llama_server.url, model=None, first_token_timeout=10, total_timeout=20
        )
    assert reply.first_token_s is not None
    assert 0 < reply.first_token_s <= reply.total_s
    assert reply.content.strip()
    assert reply.chunks <= 4
    assert reply.finish_reason == "length"
    assert reply.tokens_spent > reply.chunks  # usage counts the prompt too
    assert reply.judge(slow_first_token=10).status is HealthStatus.HEALTHY


async def test_a_paused_server_is_alive_but_cannot_generate(own_llama: LlamaServer) -> None:
    """A frozen (SIGSTOPped) server accepts the connection but yields no token: NoFirstToken."""
    own_llama.pause()
    try:
        async with httpx.AsyncClient() as client:
            with pytest.raises(NoFirstToken, match=r"no first token within 0\.5s"):
                await generate_probe(
                    client, own_llama.url, model=None, first_token_timeout=0.5, total_timeout=2
                )
    finally:
        own_llama.resume()


async def test_reasoning_only_reply_cut_by_length_counts_as_generating() -> None:
    """Reasoning tokens with empty content and finish_reason=length: generating, not empty."""
    async with streamed(
        chunk({"role": "assistant", "content": None}),
        chunk({"reasoning_content": "Let me"}),
        chunk({"reasoning_content": " think"}),
        chunk({}, "length"),
    ) as client:
        reply = await generate_probe(
            client, "http://x", model="m", first_token_timeout=1, total_timeout=2
        )
    verdict = reply.judge(slow_first_token=2)
    assert verdict.status is HealthStatus.HEALTHY
    assert "reasoning" in verdict.output


async def test_empty_reply_is_degraded() -> None:
    """A stream that ends without any token is degraded, as the seed says."""
    async with streamed(chunk({"role": "assistant", "content": ""}), chunk({}, "stop")) as client:
        reply = await generate_probe(
            client, "http://x", model="m", first_token_timeout=1, total_timeout=2
        )
    verdict = reply.judge(slow_first_token=2)
    assert verdict.status is HealthStatus.DEGRADED
    assert verdict.output == "LLM returned an empty reply"


def test_slow_first_token_is_degraded() -> None:
    """A first token later than slow_first_token degrades the verdict and says by how much."""
    reply = ProbeReply(3.2, 3.5, "OK", "", 2, "stop", 40)
    verdict = reply.judge(slow_first_token=2.0)
    assert verdict.status is HealthStatus.DEGRADED
    assert "slow first token: 3200ms > 2000ms" in verdict.output
    assert verdict.observed_value == 3200.0


async def test_server_error_in_stream_is_raised() -> None:
    """An error event in the stream is an error naming it, not a healthy empty reply."""
    async with streamed({"error": {"message": "out of memory"}}) as client:
        with pytest.raises(ValueError, match="out of memory"):
            await generate_probe(
                client, "http://x", model="m", first_token_timeout=1, total_timeout=2
            )
