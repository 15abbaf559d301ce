"""The gateway against real HTTP backends that misbehave on purpose, and a real registry.

The backends (fleetwatch_testing.openai_backend) are real HTTP servers speaking the OpenAI API;
they stand in for LLM servers where a test needs a failure a real llama-server cannot be made
to produce on cue (a 429 with Retry-After, a 503 while draining, a crash after the first
chunk). tests/gateway/test_gateway_llama.py runs the same gateway against llama.cpp itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx

from fleetwatch.discovery import RegistryClient
from tests._support.gateways import SERVICE, register, routed
from tests._support.waiting import poll_until

CHAT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


async def test_requests_go_only_to_instances_serving_the_model(
    api: RegistryClient, gateways: Any, backends: Any
) -> None:
    """model m1 goes to the m1 instance, m2 to the m2 one; an unknown model is a 404 naming both."""
    one, two = await backends(model="m1"), await backends(model="m2")
    await register(api, "one", one.port, model="m1")
    await register(api, "two", two.port, model="m2")
    gateway = await gateways()
    await routed(gateway, 2)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        for _ in range(4):
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
            other = {**CHAT, "model": "m2"}
            assert (await client.post("/v1/chat/completions", json=other)).status_code == 200
        missing = await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-9"})
        models = (await client.get("/v1/models")).json()
    assert (one.state.requests, two.state.requests) == (4, 4)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    assert "m1" in missing.json()["error"]["message"]
    assert sorted(m["id"] for m in models["data"]) == ["m1", "m2"]


async def test_busy_and_draining_backends_send_requests_elsewhere(
    api: RegistryClient, gateways: Any, backends: Any
) -> None:
    """A 429 (Retry-After 30) and a 503 are retried on the healthy instance, one retry per
    refusal; the busy one is left alone until its Retry-After ends."""
    busy, draining, good = (
        await backends(model="m1", mode="busy", retry_after=30),
        await backends(model="m1"),
        await backends(model="m1"),
    )
    for name, backend in (("busy", busy), ("draining", draining), ("good", good)):
        await register(api, name, backend.port, model="m1")
    draining.state.mode = "draining"  # after its registration: a drain in progress
    gateway = await gateways(strategy="round-robin", attempts=3)
    # The draining one fails its checks (every 0.2 s) from now on: it may leave the gateway's
    # view before the gateway's first look. The busy and the good one stay.
    await poll_until(lambda: _routable_ids(gateway), {"busy", "good"}, within=10)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        replies = [await client.post("/v1/chat/completions", json=CHAT) for _ in range(12)]
    assert [r.status_code for r in replies] == [200] * 12
    assert busy.state.requests == 1  # then its Retry-After keeps the gateway away
    assert good.state.completed == 12
    # Every attempt at the busy or the draining one was retried (the draining one may already
    # be out of discovery, its health failing, before any request reaches it).
    assert draining.state.requests <= 1
    assert gateway.gateway.stats.retries == busy.state.requests + draining.state.requests


async def _routable_ids(gateway: Any) -> set[str]:
    """The gateway's routable instances but the draining one (there or not, by timing)."""
    return {i.instance_id for i in gateway.gateway.discovery.cached(SERVICE)} - {"draining"}


async def test_every_instance_saturated_is_429_with_retry_after(
    api: RegistryClient, gateways: Any, backends: Any
) -> None:
    """One slot per instance and no queue: a second concurrent request gets 429 + Retry-After."""
    slow = await backends(model="m1", tokens=20, token_delay=0.05)
    await register(api, "slow", slow.port, model="m1")
    gateway = await gateways(per_instance_limit=1, queue_limit=0)
    await routed(gateway, 1)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        first = asyncio.create_task(client.post("/v1/chat/completions", json=CHAT))
        await poll_until(lambda: _in_flight(slow), 1, within=5)
        second = await client.post("/v1/chat/completions", json=CHAT)
        assert (await first).status_code == 200
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) >= 1
    assert second.json()["error"]["code"] == "saturated"


async def _in_flight(backend: Any) -> int:
    return int(backend.state.in_flight)


async def test_the_queue_waits_for_a_free_slot(
    api: RegistryClient, gateways: Any, backends: Any
) -> None:
    """One slot, a queue: five concurrent requests all succeed, served one after another."""
    slow = await backends(model="m1", tokens=5, token_delay=0.02)
    await register(api, "slow", slow.port, model="m1")
    gateway = await gateways(per_instance_limit=1, queue_limit=10)
    await routed(gateway, 1)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        replies = await asyncio.gather(
            *(client.post("/v1/chat/completions", json=CHAT) for _ in range(5))
        )
    assert [r.status_code for r in replies] == [200] * 5
    assert slow.state.completed == 5


async def test_a_stopped_instance_is_retried_elsewhere_before_discovery_notices(
    api: RegistryClient, gateways: Any, backends: Any
) -> None:
    """Connection refused (the instance just died) is retried on another: no failed request."""
    dead, alive = await backends(model="m1"), await backends(model="m1")
    await register(api, "dead", dead.port, model="m1")
    await register(api, "alive", alive.port, model="m1")
    gateway = await gateways(strategy="round-robin")
    await routed(gateway, 2)
    await dead.aclose()  # the registry's view still says available, for a moment
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        replies = [await client.post("/v1/chat/completions", json=CHAT) for _ in range(6)]
    assert [r.status_code for r in replies] == [200] * 6
    assert alive.state.completed == 6


async def test_a_backend_dying_mid_stream_ends_the_stream_with_an_error_event(
    api: RegistryClient, gateways: Any, backends: Any
) -> None:
    """After the first byte nothing can be retried: the client gets an error event, no hang."""
    dying = await backends(model="m1", mode="die-mid-stream", tokens=5)
    await register(api, "dying", dying.port, model="m1")
    gateway = await gateways()
    await routed(gateway, 1)
    events = []
    async with (
        asyncio.timeout(10),
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as client,
        client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as reply,
    ):
        async for line in reply.aiter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
    assert reply.status_code == 200
    assert json.loads(events[0])["choices"][0]["delta"]["content"]
    error = json.loads(events[-2])["error"]
    assert error["code"] == "upstream_failed_mid_stream"
    assert events[-1] == "[DONE]"


async def test_a_client_that_goes_away_cancels_the_upstream_request(
    api: RegistryClient, gateways: Any, backends: Any
) -> None:
    """Streamed or not, a client disconnect reaches the backend as a cancelled request."""
    slow = await backends(model="m1", tokens=100, token_delay=0.05)
    await register(api, "slow", slow.port, model="m1")
    gateway = await gateways()
    await routed(gateway, 1)
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as client,
        client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as reply,
    ):
        async for _ in reply.aiter_lines():
            break  # read one line, then hang up
    await poll_until(lambda: _cancelled(slow), 1, within=5)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=0.3) as impatient:
        with contextlib.suppress(httpx.ReadTimeout):
            await impatient.post("/v1/chat/completions", json=CHAT)
    await poll_until(lambda: _cancelled(slow), 2, within=5)
    assert slow.state.completed == 0
    await poll_until(lambda: _gateway_in_flight(gateway), 0, within=5)


async def _cancelled(backend: Any) -> int:
    return int(backend.state.cancelled)


async def _gateway_in_flight(gateway: Any) -> int:
    return sum(gateway.gateway.admission.in_flight.values())


async def test_client_tokens_are_required_and_the_upstream_key_is_injected(
    api: RegistryClient, gateways: Any, backends: Any
) -> None:
    """Without the gateway token: 401; with it: 200, and upstream sees the provider key, not it."""
    backend = await backends(model="m1")
    await register(api, "b", backend.port, model="m1")
    gateway = await gateways(client_tokens=frozenset({"client-secret"}), upstream_api_key="sk-up")
    await routed(gateway, 1)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        anonymous = await client.post("/v1/chat/completions", json=CHAT)
        wrong = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer nope"}
        )
        right = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer client-secret"}
        )
    assert (anonymous.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert anonymous.json()["error"]["type"] == "authentication_error"
    assert backend.state.last_headers["authorization"] == "Bearer sk-up"
    assert backend.state.requests == 1


async def test_a_hung_backend_is_a_timeout_not_a_hang(
    api: RegistryClient, gateways: Any, backends: Any
) -> None:
    """No first byte within the per-request timeout: 504 with a clear message."""
    hung = await backends(model="m1", mode="hang")
    await register(api, "hung", hung.port, model="m1")
    gateway = await gateways(request_timeout=1.0, attempts=1)
    await routed(gateway, 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        reply = await client.post("/v1/chat/completions", json=CHAT)
    assert reply.status_code == 504
    assert "no answer within 1s" in reply.json()["error"]["message"]
    assert loop.time() - started < 3


async def test_failing_instance_is_ejected_and_traffic_moves(
    api: RegistryClient, gateways: Any, backends: Any
) -> None:
    """An instance answering 500 is ejected after 5 consecutive failures (outlier detection)."""
    failing, good = await backends(model="m1", mode="fail"), await backends(model="m1")
    await register(api, "failing", failing.port, model="m1")
    await register(api, "good", good.port, model="m1")
    gateway = await gateways(strategy="round-robin")
    await routed(gateway, 2)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        codes = [
            (await client.post("/v1/chat/completions", json=CHAT)).status_code for _ in range(30)
        ]
    assert failing.state.requests == 5  # then its circuit opened
    assert codes.count(500) == 5
    assert codes.count(200) == 25
    circuits = gateway.gateway.discovery.outliers.snapshot()
    assert any(c.get("state") == "open" for c in circuits.values())


async def test_malformed_requests_are_refused_before_any_backend(
    api: RegistryClient, gateways: Any, backends: Any
) -> None:
    """Wrong types and missing required fields get 400 naming the field; nothing is forwarded."""
    backend = await backends(model="m1")
    await register(api, "one", backend.port, model="m1")
    gateway = await gateways()
    await routed(gateway, 1)
    bad = [
        ("/v1/chat/completions", {**CHAT, "model": 5}, "'model'"),
        ("/v1/chat/completions", {**CHAT, "stream": "yes"}, "'stream'"),
        ("/v1/chat/completions", {**CHAT, "max_tokens": 0}, "'max_tokens'"),
        ("/v1/chat/completions", {"model": "m1", "messages": []}, "'messages'"),
        ("/v1/chat/completions", {"model": "m1", "messages": ["hi"]}, "'messages[0]'"),
        ("/v1/completions", {"model": "m1"}, "'prompt'"),
        ("/v1/embeddings", {"model": "m1", "input": [1, 2]}, "'input'"),
    ]
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        replies = [(await client.post(path, json=body), needle) for path, body, needle in bad]
        fine = await client.post("/v1/completions", json={"model": "m1", "prompt": "hi"})
    for reply, needle in replies:
        assert reply.status_code == 400
        assert needle in reply.json()["error"]["message"]
    assert fine.status_code == 200
    assert backend.state.requests == 1  # only the valid request reached the backend


async def test_oversized_bodies_get_an_openai_style_413(
    api: RegistryClient, gateways: Any, backends: Any
) -> None:
    """Declared or chunked, a body over the gateway's limit is refused with 413 in OpenAI's
    error format, naming the limit; the backend never sees it."""
    backend = await backends(model="m1")
    await register(api, "one", backend.port, model="m1")
    gateway = await gateways(max_body_bytes=2048)
    await routed(gateway, 1)
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 4000}]}

    async def chunks() -> Any:
        payload = json.dumps(big).encode()
        for start in range(0, len(payload), 512):
            yield payload[start : start + 512]

    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        declared = await client.post("/v1/chat/completions", json=big)
        chunked = await client.post("/v1/chat/completions", content=chunks())
        fine = await client.post("/v1/chat/completions", json=CHAT)
    for reply in (declared, chunked):
        assert reply.status_code == 413
        assert reply.json()["error"]["type"] == "invalid_request_error"
        assert "2048 bytes" in reply.json()["error"]["message"]
    assert fine.status_code == 200
    assert backend.state.requests == 1
