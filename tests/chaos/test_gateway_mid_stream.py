"""A real llama.cpp server SIGKILLed or SIGSTOPped while it streams through the gateway:
the client gets a clean error within the request timeout, never a hang. Bounded: each case
ends within a few seconds whatever happens."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import httpx
import pytest

from fleetwatch.discovery import RegistryClient
from fleetwatch_testing.llama import LlamaServer
from tests._support.gateways import register, routed

# Needs the machine to itself: a llama.cpp server killed or paused mid-stream, timed.
# make test runs it in its one-at-a-time phase.
pytestmark = pytest.mark.serial

MODEL = "SmolLM2-135M-Instruct"
BODY = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Write a very long story."}],
    "max_tokens": 400,
    "stream": True,
    "ignore_eos": True,
}


async def _stream_then(
    server: LlamaServer, gateway_url: str, sig: signal.Signals
) -> tuple[list[str], float]:
    """Stream, deliver ``sig`` to the server after the first chunks; (events, seconds after)."""
    events: list[str] = []
    sent_at = 0.0
    async with (
        asyncio.timeout(30),
        httpx.AsyncClient(base_url=gateway_url, timeout=30) as client,
        client.stream("POST", "/v1/chat/completions", json=BODY) as reply,
    ):
        async for line in reply.aiter_lines():
            if not line.startswith("data: "):
                continue
            events.append(line[6:])
            if len(events) == 3:
                server.signal(sig)
                sent_at = time.monotonic()
    return events, time.monotonic() - sent_at


async def test_sigkill_mid_stream_ends_with_an_error_event(
    api: RegistryClient, gateways: Any, own_llama: LlamaServer
) -> None:
    """SIGKILL after the first tokens: an SSE error event and [DONE], at once."""
    await register(api, "smol", own_llama.port, model=MODEL)
    gateway = await gateways(request_timeout=10.0)
    await routed(gateway, 1)
    events, after = await _stream_then(own_llama, gateway.url, signal.SIGKILL)
    assert json.loads(events[-2])["error"]["code"] == "upstream_failed_mid_stream"
    assert events[-1] == "[DONE]"
    assert after < 2.0


async def test_sigstop_mid_stream_ends_within_the_request_timeout(
    api: RegistryClient, gateways: Any, own_llama: LlamaServer
) -> None:
    """SIGSTOP after the first tokens: the stream stalls; the gateway ends it with an error
    event when the per-request timeout (3 s) passes, not after the 60 s idle timeout."""
    await register(api, "smol", own_llama.port, model=MODEL)
    gateway = await gateways(request_timeout=3.0)
    await routed(gateway, 1)
    try:
        events, after = await _stream_then(own_llama, gateway.url, signal.SIGSTOP)
    finally:
        own_llama.resume()
    error = json.loads(events[-2])["error"]
    assert "timed out mid-stream" in error["message"]
    assert events[-1] == "[DONE]"
    assert after < 4.0
