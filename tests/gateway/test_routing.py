"""The gateway as an inference router: token counts from streams, session and prefix
affinity, scorer settings, over real HTTP backends and a real registry."""

from __future__ import annotations

from typing import Any

import httpx

from fleetwatch.discovery import RegistryClient
from fleetwatch.routing import RouterSettings
from tests._support.gateways import register, routed

STREAM = {
    "model": "m1",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 4,
    "stream": True,
}


async def _streamed(client: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> str:
    async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
        assert r.status_code == 200
        return "".join([chunk async for chunk in r.aiter_text()])


async def test_streams_carry_usage_upstream_and_only_to_clients_that_ask(
    api: RegistryClient, gateways: Any, backends: Any
) -> None:
    """Upstream is always asked for usage; a client that did not ask sees none; tokens count."""
    backend = await backends(model="m1", tokens=3)
    await register(api, "one", backend.port, model="m1")
    gateway = await gateways()
    await routed(gateway, 1)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        plain = await _streamed(client, STREAM)
        assert backend.state.last_body["stream_options"] == {"include_usage": True}
        asked = await _streamed(client, {**STREAM, "stream_options": {"include_usage": True}})
        metrics = (await client.get("/metrics")).text
    assert '"usage"' not in plain
    assert plain.count("data: ") == 4  # three tokens and [DONE]
    assert '"completion_tokens": 3' in asked
    assert (
        'fleetwatch_gateway_tokens_total{kind="completion",model="m1",service="llm"} 6.0' in metrics
    )
    assert 'fleetwatch_gateway_tokens_total{kind="prompt",model="m1",service="llm"} 10.0' in metrics


async def test_session_header_pins_each_conversation(
    api: RegistryClient, gateways: Any, backends: Any
) -> None:
    """With a session header, every turn of a conversation reaches the same instance."""
    servers = [await backends(model="m1") for _ in range(3)]
    for n, server in enumerate(servers):
        await register(api, f"b{n}", server.port, model="m1")
    router = RouterSettings(strategy="session", session_header="x-session-id")
    gateway = await gateways(router=router)
    await routed(gateway, 3)
    homes: dict[str, set[str]] = {}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        for turn in range(4):
            for conversation in range(8):
                reply = await client.post(
                    "/v1/chat/completions",
                    json={
                        **STREAM,
                        "stream": True,
                        "messages": [{"role": "user", "content": f"{turn}"}],
                    },
                    headers={"x-session-id": f"chat-{conversation}"},
                )
                homes.setdefault(f"chat-{conversation}", set()).add(
                    reply.headers["x-fleetwatch-instance"]
                )
    assert all(len(instances) == 1 for instances in homes.values())
    assert len({next(iter(i)) for i in homes.values()}) >= 2  # conversations spread


async def test_prefix_router_keeps_growing_conversations_together(
    api: RegistryClient, gateways: Any, backends: Any
) -> None:
    """The default strategy (prefix) sends each conversation's turns to one instance, spread
    over all three, and the hit counters in /metrics say so."""
    servers = [await backends(model="m1") for _ in range(3)]
    for n, server in enumerate(servers):
        await register(api, f"b{n}", server.port, model="m1")
    gateway = await gateways()
    await routed(gateway, 3)
    homes: dict[int, set[str]] = {}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        histories = {
            c: [{"role": "system", "content": f"You are bot {c}. " * 60}] for c in range(6)
        }
        for turn in range(3):
            for conversation, history in histories.items():
                history.append({"role": "user", "content": f"question {turn} " * 20})
                reply = await client.post(
                    "/v1/chat/completions", json={**STREAM, "messages": history}
                )
                homes.setdefault(conversation, set()).add(reply.headers["x-fleetwatch-instance"])
                history.append({"role": "assistant", "content": "ok ok ok ok"})
        metrics = (await client.get("/metrics")).text
    assert all(len(instances) == 1 for instances in homes.values())
    assert len({next(iter(i)) for i in homes.values()}) == 3
    hits = [
        line
        for line in metrics.splitlines()
        if line.startswith("fleetwatch_gateway_prefix_blocks_total")
    ]
    by_result = {line.split('result="')[1].split('"')[0]: float(line.split()[-1]) for line in hits}
    assert by_result["hit"] > by_result["miss"] > 0


async def test_prefix_memory_is_dropped_when_an_instance_goes_out_of_service(
    api: RegistryClient, gateways: Any, backends: Any
) -> None:
    """An instance that drains (or restarts) loses what the prefix scorer remembered of it."""
    server = await backends(model="m1")
    await register(api, "one", server.port, model="m1")
    gateway = await gateways()
    await routed(gateway, 1)
    prompt = {**STREAM, "stream": False, "messages": [{"role": "user", "content": "x" * 2000}]}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        assert (await client.post("/v1/chat/completions", json=prompt)).status_code == 200
    scorer = gateway.gateway.router.scorer("prefix")
    assert scorer is not None
    assert scorer.index.size(("llm", "one")) > 0  # type: ignore[attr-defined]
    await api.set_status("llm", "one", "draining")
    await routed(gateway, 0)
    assert scorer.index.size(("llm", "one")) == 0  # type: ignore[attr-defined]
