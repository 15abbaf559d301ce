"""/metrics on the registry, the agent, the gateway and the probe server: what they count,
and that Prometheus' own linter (``promtool check metrics``) accepts every page."""

from __future__ import annotations

from typing import Any

import httpx

from fleetwatch.cli._check import health_endpoints_app
from fleetwatch.discovery import RegistryClient
from fleetwatch.health import CheckSettings, HealthProbes, HealthScheduler
from fleetwatch.health.checks import TcpCheck
from fleetwatch.lifecycle import AppServer
from fleetwatch.llm._economy import ProbeGovernor
from fleetwatch.llm._prometheus import parse_metrics
from fleetwatch_testing import HttpBackend
from fleetwatch_testing.llama import LlamaServer
from tests._support.agents import agent_settings
from tests._support.gateways import register, routed
from tests._support.metrics import promtool_accepts, scrape
from tests._support.registry_node import RunningRegistry
from tests._support.waiting import poll_until


async def test_registry_metrics_count_changes_and_members(
    registry: RunningRegistry, api: RegistryClient, backend: HttpBackend
) -> None:
    """Registrations, transitions and deregistrations are counted; instances by status and
    discovery latency are exposed; promtool finds nothing to complain about."""
    await api.register("svc", "a", {"host": "127.0.0.1", "port": backend.port})
    await api.register("svc", "b", {"host": "127.0.0.1", "port": backend.port})

    async def available() -> int:
        _, found = await api.instances("svc", passing=True)
        return len(found)

    await poll_until(available, 2, within=10)
    await api.deregister("svc", "b")

    async def deregistrations() -> float | None:  # the node's follower reads the change feed
        return parse_metrics(await scrape(registry.url)).total("fleetwatch_deregistrations_total")

    await poll_until(deregistrations, 1.0, within=5)
    text = await scrape(registry.url)
    page = parse_metrics(text)
    await promtool_accepts(text)
    assert page.total("fleetwatch_registrations_total") == 2
    assert page.total("fleetwatch_deregistrations_total") == 1
    assert page.total("fleetwatch_status_transitions_total") >= 2
    available_now = [
        s.value for s in page.samples["fleetwatch_instances"] if s.labels["status"] == "available"
    ]
    assert available_now == [1.0]
    assert page.total("fleetwatch_discovery_request_duration_seconds_count") >= 1
    assert page.total("fleetwatch_self_preservation") == 0
    assert page.total("fleetwatch_change_propagation_seconds_count") >= 3


async def test_agent_metrics_expose_llm_load_probe_tokens_and_checks(
    registry: RunningRegistry, own_llama: LlamaServer, agents: Any
) -> None:
    """The agent's page: the server's load, probe tokens, its reported status, its checks."""
    agent = await agents(agent_settings(registry, own_llama.url))
    assert agent.agent.http is not None
    url = f"http://127.0.0.1:{agent.agent.http.port}"

    async def reported() -> str | None:
        return agent.agent.state.reported.value if agent.agent.state.reported else None

    await poll_until(reported, "available", within=15)
    governor: ProbeGovernor = agent.agent.server.governor

    async def probed() -> bool:  # the generation probe runs once readiness has been read
        return governor.tokens_spent_total > 0

    await poll_until(probed, True, within=15)
    spent_before = governor.tokens_spent_total
    text = await scrape(url)
    spent_after = governor.tokens_spent_total
    page = parse_metrics(text)
    await promtool_accepts(text)
    figures = {s.labels["figure"] for s in page.samples["fleetwatch_llm_load"]}
    assert {"running", "waiting", "generated_tokens_total"} <= figures
    probe_tokens = page.total("fleetwatch_llm_probe_tokens_total")
    assert probe_tokens is not None
    assert 0 < spent_before <= probe_tokens <= spent_after  # the governor's own account
    assert page.total("fleetwatch_check_duration_seconds_count") >= 1
    statuses = {
        s.labels["status"]: s.value for s in page.samples["fleetwatch_instance_reported_status"]
    }
    assert statuses["available"] == 1.0


async def test_gateway_metrics_time_streamed_llm_replies(
    api: RegistryClient, gateways: Any, llama_server: LlamaServer
) -> None:
    """After a streamed completion: requests by outcome, time to first token and inter-token
    latency by model, all accepted by promtool."""
    await register(api, "smol", llama_server.port, model="SmolLM2-135M-Instruct")
    gateway = await gateways()
    await routed(gateway, 1)
    body = {
        "model": "SmolLM2-135M-Instruct",
        "messages": [{"role": "user", "content": "Count to five."}],
        "max_tokens": 8,
        "stream": True,
    }
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as reply,
    ):
        assert reply.status_code == 200
        _ = [line async for line in reply.aiter_lines()]
    text = await scrape(gateway.url)
    page = parse_metrics(text)
    await promtool_accepts(text)
    ok = [
        s for s in page.samples["fleetwatch_gateway_requests_total"] if s.labels["outcome"] == "ok"
    ]
    assert ok[0].value == 1
    first = page.samples["fleetwatch_gateway_time_to_first_token_seconds_count"]
    assert first[0].labels["model"] == "SmolLM2-135M-Instruct"
    assert first[0].value == 1
    assert page.total("fleetwatch_gateway_inter_token_latency_seconds_count") == 1


async def test_probe_server_metrics_are_clean(backend: HttpBackend) -> None:
    """The probe server's page: check durations and statuses, accepted by promtool."""
    scheduler = HealthScheduler(
        [(TcpCheck("127.0.0.1", backend.port), CheckSettings("port", interval=0.2))]
    )
    async with scheduler, AppServer(health_endpoints_app(HealthProbes(scheduler))) as server:
        await scheduler.wait_for_change()
        text = await scrape(server.url)
    page = parse_metrics(text)
    await promtool_accepts(text)
    current = {
        s.labels["status"]: s.value
        for s in page.samples["fleetwatch_check_status"]
        if s.labels["check"] == "port"
    }
    assert current["healthy"] == 1.0
    assert sum(current.values()) == 1.0
