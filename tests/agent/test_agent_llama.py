"""The agent against a real llama.cpp server (SmolLM2-135M) and a real registry."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import httpx
import pytest

from fleetwatch.agent import StopReason
from fleetwatch.discovery import RegistryClient
from fleetwatch.llm._check import GENERATE_CHECK
from fleetwatch.registry._model import InstanceStatus
from fleetwatch_testing import free_port
from fleetwatch_testing.llama import LlamaServer, llama_server_argv
from tests._support.agents import agent_settings, instance_of, status_of, wait_status
from tests._support.llm_servers import Throttle
from tests._support.registry_node import RunningRegistry

# Needs the machine to itself: agents' llama.cpp servers paused and killed against timing bounds.
# make test runs it in its one-at-a-time phase.
pytestmark = pytest.mark.serial


async def test_loading_is_starting_then_ready_is_available(
    registry: RunningRegistry, api: RegistryClient, llama_servers: Any, agents: Any
) -> None:
    """While llama-server loads (503 Loading model) the instance is starting; then available."""
    (server,) = llama_servers(1, wait_ready=False)
    assert server.pid is not None
    with Throttle(server.pid) as throttle:
        agent = await agents(agent_settings(registry, server.url))
        iid = agent.agent.state.instance_id
        scheduler = agent.agent.scheduler
        async with asyncio.timeout(20):
            while "Loading model" not in (agent.agent.current_verdict()[1]):
                await scheduler.wait_for_change()
        assert await status_of(api, iid) is InstanceStatus.STARTING
        throttle.release()
        took = await wait_status(api, iid, InstanceStatus.AVAILABLE, within=20)
    instance = await instance_of(api, iid)
    assert instance is not None
    assert instance.metadata["kind"] == "llamacpp"
    assert took < 10  # ready within a few readiness intervals of the model loading


async def test_sigstop_is_unavailable_within_3s_and_sigcont_brings_it_back(
    registry: RunningRegistry, api: RegistryClient, own_llama: LlamaServer, agents: Any
) -> None:
    """SIGSTOP: unavailable within interval + fall x timeout (<= 3 s); SIGCONT: available."""
    agent = await agents(agent_settings(registry, own_llama.url))
    iid = await agent.available(api, within=15)
    own_llama.pause()
    try:
        took = await wait_status(api, iid, InstanceStatus.UNAVAILABLE, within=6)
    finally:
        own_llama.resume()
    assert took <= 3.0
    await wait_status(api, iid, InstanceStatus.AVAILABLE, within=6)


async def test_sigkill_of_a_launched_server_takes_it_out_of_discovery_at_once(
    registry: RunningRegistry, api: RegistryClient, agents: Any
) -> None:
    """The agent launched the server; SIGKILL: the agent notices, deregisters, exits 137."""
    port = free_port()
    settings = agent_settings(
        registry, f"http://127.0.0.1:{port}", command=tuple(llama_server_argv(port))
    )
    agent = await agents(settings)
    iid = await agent.available(api, within=20)
    child = agent.agent.child
    assert child is not None
    assert child.pid is not None
    killed_at = time.monotonic()
    child.send(signal.SIGKILL)
    async with asyncio.timeout(5):
        code = await agent.task
    _, passing = await api.instances("smol", passing=True)
    assert all(i.instance_id != iid for i in passing)
    assert await status_of(api, iid) is None
    assert code == 128 + signal.SIGKILL  # the child's fate, as a shell reports it
    assert time.monotonic() - killed_at < 2.0
    assert agent.agent.state.stop_reason is StopReason.CHILD_EXITED


async def test_no_probe_while_real_traffic_succeeds(
    registry: RunningRegistry, api: RegistryClient, own_llama: LlamaServer, agents: Any
) -> None:
    """While real requests generate tokens, the agent spends no probe tokens; after, it does."""
    settings = agent_settings(
        registry,
        own_llama.url,
        llm={"probe_every": 0.5, "probe_check_interval": 0.25, "evidence_window": 2.5},
    )
    agent = await agents(settings)
    await agent.available(api, within=15)
    governor = agent.agent.server.governor
    body = {"messages": [{"role": "user", "content": "Count to three."}], "max_tokens": 8}
    async with httpx.AsyncClient(timeout=10) as client:
        await client.post(f"{own_llama.url}/v1/chat/completions", json=body)
        await asyncio.sleep(1.2)  # the agent reads the counter rise
        before = governor.probes_run
        deadline = time.monotonic() + 5.0
        requests = 0
        while time.monotonic() < deadline:
            reply = await client.post(f"{own_llama.url}/v1/chat/completions", json=body)
            assert reply.status_code == 200
            requests += 1
            await asyncio.sleep(0.3)
        during = governor.probes_run - before
        await asyncio.sleep(4.0)  # evidence expires; probing resumes
    assert requests >= 5
    assert during == 0
    assert governor.probes_skipped > 0
    assert governor.probes_run > before


async def test_the_hourly_token_budget_holds(
    registry: RunningRegistry, api: RegistryClient, own_llama: LlamaServer, agents: Any
) -> None:
    """Probing as often as allowed, spending stops at the budget and the skips say why."""
    settings = agent_settings(
        registry,
        own_llama.url,
        llm={"probe_every": 0.0, "probe_check_interval": 0.1, "hourly_token_budget": 150},
    )
    agent = await agents(settings)
    governor = agent.agent.server.governor
    async with asyncio.timeout(20):
        while governor.probes_skipped < 10:
            await agent.agent.scheduler.wait_for_change()
    assert governor.probes_run >= 2
    assert governor.spent_last_hour() <= 150
    assert governor.tokens_spent_total == governor.spent_last_hour()
    generation = agent.agent.scheduler.state(GENERATE_CHECK)
    assert generation is not None
    assert generation.result is not None
    assert "not probed: hourly token budget reached" in generation.result.output
    async with httpx.AsyncClient() as client:
        exported = (await client.get(f"http://127.0.0.1:{agent.agent.http.port}/v1/agent")).json()
    assert exported["probe_tokens_total"] == governor.tokens_spent_total
    load = await api.load("smol")
    assert load[agent.agent.state.instance_id]["probe_tokens_total"] <= 150


async def test_a_draining_agent_finishes_in_flight_requests_before_deregistering(
    registry: RunningRegistry, api: RegistryClient, own_llama: LlamaServer, agents: Any
) -> None:
    """Operator sets draining mid-request: the request completes, then the instance leaves."""
    agent = await agents(agent_settings(registry, own_llama.url))
    iid = await agent.available(api, within=15)
    body = {
        "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}],
        "max_tokens": 200,
        "temperature": 0,
        "ignore_eos": True,
    }
    async with httpx.AsyncClient(timeout=30) as client:
        request = asyncio.create_task(
            client.post(f"{own_llama.url}/v1/chat/completions", json=body)
        )
        await asyncio.sleep(0.3)
        await api.set_status("smol", iid, "draining")
        reply = await request
        assert await status_of(api, iid) is not None  # still registered when it finished
    assert reply.status_code == 200
    assert reply.json()["usage"]["completion_tokens"] == 200
    async with asyncio.timeout(10):
        code = await agent.task
    assert code == 0
    assert await status_of(api, iid) is None
    assert agent.agent.state.drained_in_flight == 0
    assert not agent.agent.state.drain_timed_out
