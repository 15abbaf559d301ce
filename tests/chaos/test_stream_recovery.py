"""Streams that survive a dying server: three real llama.cpp servers behind the gateway, the
one serving a stream SIGKILLed or SIGSTOPped mid-way, and the stream continued on another.

Equality with an uninterrupted run holds under the settings these servers share: the same
build and model (SmolLM2-135M Q4_1), ``--parallel 2``, one thread, default batch sizes,
greedy decoding, and a reply whose text tokenizes back to the ids that produced it (checked
for this prompt when the recovery was built: continuing at 5, 20, 47 and 80 tokens gave the
reference text each time).
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from fleetwatch.discovery import RegistryClient
from fleetwatch.gateway.recovery import RecoverySettings
from fleetwatch_testing.llama import LlamaServer
from tests._support.gateways import SERVICE, RunningGateway, register, routed
from tests._support.waiting import poll_until

# Needs the machine to itself: llama.cpp servers killed and paused mid-stream.
pytestmark = pytest.mark.serial

MODEL = "SmolLM2-135M-Instruct"
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Tell me about the history of Rome in detail."},
]
GREEDY: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "temperature": 0}


async def _fleet(
    api: RegistryClient,
    gateways: Any,
    llama_servers: Callable[..., list[LlamaServer]],
    **settings: Any,
) -> tuple[RunningGateway, dict[str, LlamaServer]]:
    servers = llama_servers(3)
    for n, server in enumerate(servers):
        await register(api, f"smol{n}", server.port, model=MODEL, kind="llamacpp")
    gateway = await gateways(**settings)
    await routed(gateway, 3)
    return gateway, {f"smol{n}": server for n, server in enumerate(servers)}


async def _raw_stream(
    gateway: RunningGateway,
    body: dict[str, Any],
    act: Callable[[LlamaServer], None],
    servers: dict[str, LlamaServer],
    *,
    when: Callable[[str, int], bool],
    act_needed: bool = True,
) -> tuple[list[dict[str, Any] | str], str]:
    """Stream ``body`` as raw SSE; ``act`` on the serving llama.cpp once ``when(text so
    far, events so far)``; (every event, decoded; the serving instance)."""
    events: list[dict[str, Any] | str] = []
    text, acted = "", False
    async with (
        asyncio.timeout(60),
        httpx.AsyncClient(base_url=gateway.url, timeout=60) as client,
        client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as reply,
    ):
        serving = reply.headers["x-fleetwatch-instance"]
        async for line in reply.aiter_lines():
            if not line.startswith("data: "):
                continue
            event = line[6:] if line == "data: [DONE]" else json.loads(line[6:])
            events.append(event)
            if isinstance(event, dict) and event.get("choices"):
                text += event["choices"][0].get("delta", {}).get("content") or ""
            if not acted and when(text, len(events)):
                act(servers[serving])
                acted = True
    assert reply.status_code == 200
    assert acted or not act_needed, "the stream ended before the server could be stopped"
    return events, serving


async def _stream_served_by(gateway: RunningGateway, instance_id: str) -> list[Any]:
    """The events of a greedy 20-token stream first served by ``instance_id`` (the gateway
    routes round robin over two instances: one of two requests goes to each)."""
    body = {**GREEDY, "max_tokens": 20, "stream": True}
    for _ in range(2):
        events, serving = await _raw_stream(
            gateway, body, lambda _: None, {}, when=lambda *_: False, act_needed=False
        )
        if serving == instance_id:
            return events
    raise AssertionError(f"no request of two went to {instance_id}")


def _text(events: list[dict[str, Any] | str]) -> str:
    return "".join(
        e["choices"][0].get("delta", {}).get("content") or ""
        for e in events
        if isinstance(e, dict) and e.get("choices")
    )


def _finishes(events: list[dict[str, Any] | str]) -> list[str]:
    return [
        e["choices"][0]["finish_reason"]
        for e in events
        if isinstance(e, dict) and e.get("choices") and e["choices"][0].get("finish_reason")
    ]


async def _reference(gateway: RunningGateway, body: dict[str, Any]) -> dict[str, Any]:
    """The same request, uninterrupted and not streamed."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        reply = await client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200
    return dict(reply.json())


async def _recoveries(gateway: RunningGateway) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        return dict((await client.get("/v1/gateway/stats")).json()["recoveries"])


async def test_sigkill_mid_stream_continues_the_same_reply_through_the_openai_sdk(
    api: RegistryClient, gateways: Any, llama_servers: Callable[..., list[LlamaServer]]
) -> None:
    """SIGKILL after 10 chunks: the SDK's one stream has the uninterrupted run's exact text,
    one id, one finish_reason, and usage counting the prompt once and every token sent."""
    gateway, servers = await _fleet(api, gateways, llama_servers)
    reference = await _reference(gateway, {**GREEDY, "max_tokens": 120})
    client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0)
    async with client:
        raw = await client.chat.completions.with_raw_response.create(
            **GREEDY, max_tokens=120, stream=True, stream_options={"include_usage": True}
        )
        serving = servers[raw.headers["x-fleetwatch-instance"]]
        chunks = []
        async for chunk in raw.parse():
            chunks.append(chunk)
            if len(chunks) == 10:
                serving.signal(signal.SIGKILL)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reference["choices"][0]["message"]["content"]
    assert {c.id for c in chunks} == {chunks[0].id}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert [f for f in finishes if f] == ["length"]
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens == reference["usage"]["prompt_tokens"]
    assert usage.completion_tokens == 120
    assert (await _recoveries(gateway)) == {"recovered": 1}


async def test_sigstop_mid_stream_recovers_after_the_inter_token_timeout(
    api: RegistryClient, gateways: Any, llama_servers: Callable[..., list[LlamaServer]]
) -> None:
    """SIGSTOP after 10 events: the stream goes on elsewhere after the 1 s inter-token
    timeout, with one [DONE], no error event and the reference text; the stopped server
    leaves the gateway's routing."""
    gateway, servers = await _fleet(
        api, gateways, llama_servers, recovery=RecoverySettings(inter_token_timeout=1.0)
    )
    reference = await _reference(gateway, {**GREEDY, "max_tokens": 100})
    stopped: list[LlamaServer] = []

    def pause(server: LlamaServer) -> None:
        server.pause()
        stopped.append(server)

    try:
        events, serving = await _raw_stream(
            gateway, {**GREEDY, "max_tokens": 100}, pause, servers, when=lambda _, n: n == 10
        )

        async def routable() -> bool:
            found = gateway.gateway.discovery.routable(SERVICE)
            return serving not in {i.instance_id for i in found}

        await poll_until(routable, True, within=10)
    finally:
        for server in stopped:
            server.resume()
    assert _text(events) == reference["choices"][0]["message"]["content"]
    assert events.count("[DONE]") == 1
    assert events[-1] == "[DONE]"
    assert not any(isinstance(e, dict) and "error" in e for e in events)
    assert _finishes(events) == ["length"]
    assert (await _recoveries(gateway)) == {"recovered": 1}


async def test_a_stop_string_begun_before_the_seam_still_stops_the_stream(
    api: RegistryClient, gateways: Any, llama_servers: Callable[..., list[LlamaServer]]
) -> None:
    """A stop string of the reference reply: the first server holds its beginning back, dies
    while it does, and the next server, continuing, stops at it: the text ends where the stop
    string begins, with finish_reason stop."""
    gateway, servers = await _fleet(api, gateways, llama_servers)
    events, _ = await _raw_stream(
        gateway, {**GREEDY, "max_tokens": 100}, lambda _: None, servers, when=lambda *_: True
    )
    whole = _text(events)
    # Where a chunk ends, a third of the way in: the server sends the text up to there, then
    # holds back what matches the stop string's beginning.
    ends = [len(_text(events[: n + 1])) for n in range(len(events))]
    at = min(ends, key=lambda end: abs(end - len(whole) // 3))
    stop = whole[at : at + 60]
    assert whole.find(stop) == at  # the stop string first occurs where it is cut
    body = {**GREEDY, "max_tokens": 100, "stop": [stop]}
    events, _ = await _raw_stream(
        gateway, body, lambda s: s.signal(signal.SIGKILL), servers, when=lambda t, _: len(t) >= at
    )
    assert _text(events) == whole[:at]
    assert _finishes(events) == ["stop"]
    assert events.count("[DONE]") == 1
    assert (await _recoveries(gateway)) == {"recovered": 1}


async def test_max_tokens_is_honoured_across_the_seam(
    api: RegistryClient, gateways: Any, llama_servers: Callable[..., list[LlamaServer]]
) -> None:
    """max_tokens 40, SIGKILL after 15 events: 40 tokens in all, the reference's text, and
    finish_reason length once."""
    gateway, servers = await _fleet(api, gateways, llama_servers)
    body = {**GREEDY, "max_tokens": 40, "stream_options": {"include_usage": True}}
    reference = await _reference(gateway, {**GREEDY, "max_tokens": 40})
    events, _ = await _raw_stream(
        gateway, body, lambda s: s.signal(signal.SIGKILL), servers, when=lambda _, n: n == 15
    )
    usage = next(e["usage"] for e in events if isinstance(e, dict) and e.get("usage"))
    assert usage["completion_tokens"] == 40
    assert _text(events) == reference["choices"][0]["message"]["content"]
    assert _finishes(events) == ["length"]


async def test_a_request_that_cannot_be_continued_ends_with_the_error_event_counted(
    api: RegistryClient, gateways: Any, llama_servers: Callable[..., list[LlamaServer]]
) -> None:
    """A request asking for logprobs is never continued: SIGKILL mid-stream ends it with the
    error event, which names why, and /metrics counts it as not_recoverable."""
    gateway, servers = await _fleet(api, gateways, llama_servers)
    body = {**GREEDY, "max_tokens": 100, "logprobs": True, "top_logprobs": 1}
    events, _ = await _raw_stream(
        gateway, body, lambda s: s.signal(signal.SIGKILL), servers, when=lambda _, n: n == 5
    )
    error = next(e["error"] for e in events if isinstance(e, dict) and "error" in e)
    assert error["code"] == "upstream_failed_mid_stream"
    assert "logprobs" in error["message"]
    assert events[-1] == "[DONE]"
    line = (
        'fleetwatch_gateway_stream_recoveries_total{result="not_recoverable",'
        f'service="{SERVICE}"}} 1.0'
    )

    async def counted() -> bool:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
            return line in (await client.get("/metrics")).text

    await poll_until(counted, True, within=5)  # the report follows the last byte
    assert (await _recoveries(gateway)) == {"not_recoverable": 1}


@pytest.mark.parametrize("mode", ["die-mid-stream", "error-mid-stream", "eof-mid-stream"])
async def test_each_kind_of_break_is_continued(
    api: RegistryClient,
    gateways: Any,
    backends: Any,
    llama_server: LlamaServer,
    mode: str,
) -> None:
    """A connection reset, an error event, or an EOF without a final event, after the first
    chunk: the stream goes on from that chunk's text on llama.cpp, with no error event."""
    breaking = await backends(model=MODEL, mode=mode, tokens=5)
    await register(api, "breaking", breaking.port, model=MODEL, kind="openai")
    await register(api, "smol", llama_server.port, model=MODEL, kind="llamacpp")
    gateway = await gateways(strategy="round-robin")
    await routed(gateway, 2)
    events = await _stream_served_by(gateway, "breaking")
    assert _text(events).startswith("ok ")
    assert len(_text(events)) > len("ok ")
    assert not any(isinstance(e, dict) and "error" in e for e in events)
    assert events.count("[DONE]") == 1
    assert _finishes(events) == ["length"]
    assert (await _recoveries(gateway)) == {"recovered": 1}


async def test_a_completion_stream_is_continued_too(
    api: RegistryClient, gateways: Any, llama_servers: Callable[..., list[LlamaServer]]
) -> None:
    """/v1/completions, greedy, SIGKILL after 10 events: the text equals the uninterrupted
    completion's, and the stream ends with one finish_reason and one [DONE]."""
    gateway, servers = await _fleet(api, gateways, llama_servers)
    body = {"model": MODEL, "prompt": "The history of Rome began", "temperature": 0}
    body["max_tokens"] = 80
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        reference = (await client.post("/v1/completions", json=body)).json()
        events: list[Any] = []
        async with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as reply:
            serving = servers[reply.headers["x-fleetwatch-instance"]]
            async for line in reply.aiter_lines():
                if line.startswith("data: "):
                    events.append(line[6:] if line == "data: [DONE]" else json.loads(line[6:]))
                    if len(events) == 10:
                        serving.signal(signal.SIGKILL)
    chunks = [e for e in events if isinstance(e, dict) and e.get("choices")]
    assert "".join(c["choices"][0]["text"] for c in chunks) == reference["choices"][0]["text"]
    assert [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0].get("finish_reason")
    ] == ["length"]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert events.count("[DONE]") == 1
    assert (await _recoveries(gateway)) == {"recovered": 1}


async def test_a_reset_after_the_final_event_ends_the_stream_without_a_recovery(
    api: RegistryClient, gateways: Any, backends: Any, llama_server: LlamaServer
) -> None:
    """A server that sent its finish_reason, then reset: the client gets the one [DONE] it
    was missing, nothing is continued or counted as a recovery, and the request is ok."""
    done_then_reset = await backends(model=MODEL, mode="reset-after-finish", tokens=4)
    await register(api, "finishing", done_then_reset.port, model=MODEL, kind="openai")
    await register(api, "smol", llama_server.port, model=MODEL, kind="llamacpp")
    gateway = await gateways(strategy="round-robin")
    await routed(gateway, 2)
    events = await _stream_served_by(gateway, "finishing")
    assert _text(events) == "ok " * 4
    assert _finishes(events) == ["stop"]
    assert events.count("[DONE]") == 1
    assert (await _recoveries(gateway)) == {}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        stats = (await client.get("/v1/gateway/stats")).json()
    assert "failed_after_first_byte" not in stats["outcomes"]
