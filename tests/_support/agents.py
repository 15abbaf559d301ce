"""Agents in this process, against a real registry: settings, a running agent, and waits on
what the registry says of it. Its ``agents`` fixture is loaded for every test folder."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from fleetwatch.agent import Agent, AgentSettings, StopReason
from fleetwatch.discovery import RegistryClient
from fleetwatch.llm._check import LlmServerSettings
from fleetwatch.registry._model import Instance, InstanceStatus
from tests._support.registry_node import TOKEN, RunningRegistry

SERVICE = "smol"


def agent_settings(registry: RunningRegistry, upstream: str, **changes: Any) -> AgentSettings:
    """Quick settings: short lease and propagation delay; llm settings via ``llm=``."""
    llm_changes = changes.pop("llm", {})
    llm = replace(LlmServerSettings(base_url=upstream, kind="llamacpp"), **llm_changes)
    base = AgentSettings(
        service=SERVICE,
        llm=llm,
        registry_url=registry.url,
        token=TOKEN,
        ttl=3.0,
        propagation_delay=0.3,
        drain_timeout=10.0,
        stop_timeout=5.0,
    )
    return replace(base, **changes)


class RunningAgent:
    """An agent running as a task; ``await stop()`` ends it and returns its exit code."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.task = asyncio.create_task(agent.run(handle_signals=False))

    async def started(self) -> None:
        async with asyncio.timeout(10):
            ready = asyncio.ensure_future(self.agent.ready.wait())
            await asyncio.wait({ready, self.task}, return_when=asyncio.FIRST_COMPLETED)
            if self.task.done():
                ready.cancel()
                await self.task  # raises what went wrong

    @property
    def iid(self) -> str:
        return self.agent.state.instance_id

    async def available(self, api: RegistryClient, *, within: float = 15) -> str:
        """Wait until the registry lists the instance as available; its id."""
        await wait_status(api, self.iid, InstanceStatus.AVAILABLE, within=within)
        return self.iid

    async def stop(self, reason: str = "test over") -> int:
        self.agent.request_stop(StopReason.REQUESTED, reason)
        async with asyncio.timeout(30):
            return await self.task


@pytest.fixture
async def agents() -> AsyncIterator[Callable[[AgentSettings], Awaitable[RunningAgent]]]:
    """Start agents; every one still running is stopped after the test."""
    running: list[RunningAgent] = []

    async def start(settings: AgentSettings) -> RunningAgent:
        agent = RunningAgent(Agent(settings))
        running.append(agent)
        await agent.started()
        return agent

    try:
        yield start
    finally:
        for agent in running:
            if not agent.task.done():
                with contextlib.suppress(Exception):
                    await agent.stop()


async def instance_of(api: RegistryClient, instance_id: str) -> Instance | None:
    """The registry's view of one instance of the test service."""
    _, instances = await api.instances(SERVICE)
    return next((i for i in instances if i.instance_id == instance_id), None)


async def status_of(api: RegistryClient, instance_id: str) -> InstanceStatus | None:
    instance = await instance_of(api, instance_id)
    return instance.status if instance else None


async def wait_status(
    api: RegistryClient, instance_id: str, wanted: InstanceStatus | None, *, within: float
) -> float:
    """Poll the registry until the instance has ``wanted`` (None: gone); seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(within):
        # The registry is another component reached over HTTP: polling is the honest wait.
        while await status_of(api, instance_id) is not wanted:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return loop.time() - started
