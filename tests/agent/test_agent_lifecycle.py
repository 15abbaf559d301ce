"""The agent's own life: startup grace, the first generation probe, signal forwarding,
removal by an operator."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from fleetwatch.agent import Agent, StopReason
from fleetwatch.discovery import RegistryClient
from fleetwatch.health import HealthStatus
from fleetwatch.llm._check import GENERATE_CHECK
from fleetwatch.registry._model import InstanceStatus
from fleetwatch_testing import free_port
from fleetwatch_testing.llama import LlamaServer
from fleetwatch_testing.openai_backend import OpenAIBackend
from tests._support.agents import agent_settings, status_of, wait_status
from tests._support.registry_node import OPS_TOKEN, RunningRegistry


async def test_a_server_that_never_loads_is_unavailable_after_the_startup_grace(
    registry: RunningRegistry, api: RegistryClient, agents: Any
) -> None:
    """Nothing answers upstream: starting at first, unavailable once the grace has passed."""
    upstream = f"http://127.0.0.1:{free_port()}"
    agent = await agents(agent_settings(registry, upstream, startup_grace=1.5))
    iid = agent.agent.state.instance_id
    assert await status_of(api, iid) is InstanceStatus.STARTING
    took = await wait_status(api, iid, InstanceStatus.UNAVAILABLE, within=10)
    assert took >= 1.0
    assert "not ready after" in agent.agent.current_verdict()[1]


async def test_a_loaded_server_is_probed_at_once_and_available_within_two_readings(
    registry: RunningRegistry, api: RegistryClient, agents: Any
) -> None:
    """The generation probe does not wait its 5 s interval for the model to load: available
    once readiness has passed twice (1 s apart), with the probe's tokens spent."""
    async with OpenAIBackend() as backend:
        settings = agent_settings(
            registry, backend.url, llm={"kind": "openai", "probe_check_interval": 5.0}
        )
        agent = await agents(settings)
        took = await wait_status(api, agent.iid, InstanceStatus.AVAILABLE, within=10)
        assert took < 3.0
        assert backend.state.by_path.get("/v1/chat/completions", 0) >= 1


async def test_a_loaded_server_stays_starting_until_its_first_probe_has_answered(
    registry: RunningRegistry, api: RegistryClient, agents: Any
) -> None:
    """Readiness passes twice within a second, but a probe streaming slowly (0.6 s a token)
    has not answered yet: the instance is available only once the probe has its verdict."""
    async with OpenAIBackend(token_delay=0.6) as backend:
        agent = await agents(agent_settings(registry, backend.url, llm={"kind": "openai"}))
        await wait_status(api, agent.iid, InstanceStatus.AVAILABLE, within=10)
        probe = agent.agent.scheduler.state(GENERATE_CHECK)
        assert probe is not None
        assert probe.result is not None
        assert probe.status is HealthStatus.HEALTHY
        assert backend.state.by_path.get("/v1/chat/completions", 0) >= 1


async def test_the_first_probe_is_a_warm_up_and_later_ones_judge_speed(
    registry: RunningRegistry, api: RegistryClient, agents: Any
) -> None:
    """A first token after 2.5 s (slow is 2 s, the timeout 5 s): the first probe after the
    load makes the instance available; the next one, as slow, makes it degraded."""
    async with OpenAIBackend(token_delay=2.5, tokens=1) as backend:
        llm = {"kind": "openai", "probe_every": 0.5, "probe_check_interval": 1.0}
        agent = await agents(agent_settings(registry, backend.url, llm=llm))
        await wait_status(api, agent.iid, InstanceStatus.AVAILABLE, within=10)
        await wait_status(api, agent.iid, InstanceStatus.DEGRADED, within=10)
        assert "slow first token" in agent.agent.current_verdict()[1]
        assert backend.state.by_path.get("/v1/chat/completions", 0) >= 2


async def test_a_server_whose_every_generation_fails_never_becomes_available(
    registry: RunningRegistry, api: RegistryClient, agents: Any
) -> None:
    """Ready by its own endpoints but answering every generation with 500: the first probe
    runs as soon as it is loaded, so it is never routable, not even briefly."""
    async with OpenAIBackend(mode="fail") as backend:
        agent = await agents(agent_settings(registry, backend.url, llm={"kind": "openai"}))
        seen = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 4.0
        while loop.time() < deadline:
            seen.add(await status_of(api, agent.iid))
            await asyncio.sleep(0.05)
        assert InstanceStatus.AVAILABLE not in seen
        assert InstanceStatus.UNAVAILABLE in seen
        assert backend.state.by_path.get("/v1/chat/completions", 0) >= 1


async def test_signals_are_forwarded_to_the_child(
    registry: RunningRegistry, agents: Any, tmp_path: Path
) -> None:
    """SIGUSR1 to the agent reaches the server it launched."""
    marker = tmp_path / "got-usr1"
    # The handler writes the receiving process' pid, renaming it into place so that the marker
    # appears complete.
    script = (
        "import os, signal, time, pathlib\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "def got(*_):\n"
        "    part = marker.with_suffix('.part')\n"
        "    part.write_text(str(os.getpid()))\n"
        "    part.rename(marker)\n"
        "signal.signal(signal.SIGUSR1, got)\n"
        "time.sleep(30)\n"
    )
    settings = agent_settings(
        registry, f"http://127.0.0.1:{free_port()}", command=(sys.executable, "-c", script)
    )
    agent = await agents(settings)
    await asyncio.sleep(0.5)  # the child installs its handler
    os.kill(os.getpid(), signal.SIGUSR1)  # the agent runs in this process
    async with asyncio.timeout(5):
        while not marker.exists():  # noqa: ASYNC110 - another process writes the file
            await asyncio.sleep(0.05)
    assert agent.agent.child is not None
    assert int(marker.read_text()) == agent.agent.child.pid  # the very child the agent launched


async def test_an_operator_removing_the_instance_stops_the_agent(
    registry: RunningRegistry, own_llama: LlamaServer, agents: Any
) -> None:
    """A deregistration by an admin (410 on the next heartbeat) ends the agent, exit 0."""
    agent = await agents(agent_settings(registry, own_llama.url, ttl=1.5))
    iid = agent.agent.state.instance_id
    async with RegistryClient(registry.url, token=OPS_TOKEN) as ops:
        await wait_status(ops, iid, InstanceStatus.AVAILABLE, within=15)
        await ops.deregister("smol", iid)
        async with asyncio.timeout(5):
            code = await agent.task
        assert await status_of(ops, iid) is None
    assert code == 0
    assert agent.agent.state.stop_reason is StopReason.REMOVED


async def test_an_agent_waits_for_a_registry_out_of_reach_at_its_start(
    registry: RunningRegistry, api: RegistryClient
) -> None:
    """The registry is down as the agent starts (a fleet starting at once swamps it so): the
    agent keeps asking, registers once the registry is back, and its server goes available."""
    await registry.stop()
    async with OpenAIBackend() as backend:
        agent = Agent(agent_settings(registry, backend.url, llm={"kind": "openai"}))
        task = asyncio.create_task(agent.run(handle_signals=False))
        await asyncio.sleep(1.5)
        assert not task.done()
        assert not agent.ready.is_set()
        await registry.start()
        async with asyncio.timeout(15):
            await agent.ready.wait()
        await wait_status(api, agent.state.instance_id, InstanceStatus.AVAILABLE, within=10)
        agent.request_stop(StopReason.SIGNAL, "the test is over")
        async with asyncio.timeout(15):
            assert await task == 0


async def test_an_agent_stopped_while_its_registry_is_out_of_reach_exits_at_once(
    registry: RunningRegistry,
) -> None:
    """Asked to stop while it waits for the registry, the agent ends within a second, 0."""
    await registry.stop()
    agent = Agent(agent_settings(registry, f"http://127.0.0.1:{free_port()}"))
    task = asyncio.create_task(agent.run(handle_signals=False))
    await asyncio.sleep(0.8)
    agent.request_stop(StopReason.SIGNAL, "the test is over")
    async with asyncio.timeout(1.5):
        assert await task == 0
    assert not agent.ready.is_set()


async def test_the_probe_server_keeps_an_idle_connection_past_the_next_livez_check(
    registry: RunningRegistry,
) -> None:
    """With /livez checked every 6 s, a connection idle for 6 s (past the 5 s default) is
    still open and answers: the registry's watched connection lasts from check to check."""
    async with OpenAIBackend() as backend:
        agent = Agent(
            agent_settings(registry, backend.url, llm={"kind": "openai"}, livez_every=6.0)
        )
        task = asyncio.create_task(agent.run(handle_signals=False))
        try:
            async with asyncio.timeout(15):
                await agent.ready.wait()
            assert agent.http is not None
            reader, writer = await asyncio.open_connection("127.0.0.1", agent.http.port)
            request = b"GET /livez HTTP/1.1\r\nHost: agent\r\n\r\n"
            answers = []
            for pause in (0.0, 6.0):
                await asyncio.sleep(pause)
                writer.write(request)
                async with asyncio.timeout(5):
                    answers.append(await reader.readline())
                    while (await reader.readline()) not in (b"\r\n", b""):
                        pass  # the headers; the body is read with the next status line
                    await reader.read(4096)
            writer.close()
            assert [a.split()[1] for a in answers] == [b"200", b"200"]
        finally:
            agent.request_stop(StopReason.SIGNAL, "the test is over")
            async with asyncio.timeout(15):
                await task
