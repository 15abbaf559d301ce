"""Background loops cannot die silently: a crash injected into a loop of each kind of owner
(monitor, discovery client, gateway, agent) is logged with the loop's name, counted in
``fleetwatch_task_crashes_total``, and then restarts the loop or fails the owner."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from fleetwatch._supervisor import CRASHES, Policy, Supervisor
from fleetwatch.agent import Agent, StopReason
from fleetwatch.discovery import DiscoveryClient, RegistryClient
from fleetwatch.gateway import Gateway, GatewaySettings
from fleetwatch.observability import TaskMetrics
from fleetwatch.registry import Monitor, MonitorSettings
from fleetwatch.registry.stores import MemoryStore
from fleetwatch_testing.openai_backend import OpenAIBackend
from tests._support.agents import agent_settings
from tests._support.registry_node import TOKEN, RunningRegistry

INJECTED = "injected crash"


def crash_once(owner: object, attribute: str, error: Exception | None = None) -> list[int]:
    """Make ``owner.attribute`` (an async callable) raise once, then work as before; the
    returned list counts the calls."""
    original: Callable[..., Awaitable[Any]] = getattr(owner, attribute)
    calls: list[int] = []

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise error or RuntimeError(INJECTED)
        return await original(*args, **kwargs)

    setattr(owner, attribute, flaky)
    return calls


def exported_crashes(task: str, registry: CollectorRegistry | None = None) -> float:
    """What /metrics says of ``task``'s crashes (a scrape of a registry with TaskMetrics)."""
    if registry is None:
        registry = CollectorRegistry()
        TaskMetrics(registry)
    value = registry.get_sample_value("fleetwatch_task_crashes_total", {"task": task})
    return value or 0.0


async def until(condition: Callable[[], object], within: float) -> None:
    """Wait (in this process) until ``condition()`` holds; fail after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the loops under test set no event
            await asyncio.sleep(0.02)


def crash_logged(caplog: pytest.LogCaptureFixture, task: str) -> bool:
    return any(
        r.name == "fleetwatch.tasks" and f"task.crashed {task}" in r.getMessage()
        for r in caplog.records
    )


async def test_a_restarting_loop_runs_again_and_a_failing_loop_fails_its_owner(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Restart: the loop runs again after its crash. Fail: the owner is told, its other loops
    are cancelled, and aclose logs what it cancelled."""
    runs: list[int] = []
    failures: list[str] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError(INJECTED)
        await asyncio.Event().wait()

    async def broken() -> None:
        raise KeyError("boom")

    loops = Supervisor("unit", on_fail=lambda task, _exc: failures.append(task), first_backoff=0.01)
    loops.start("flaky", flaky)
    await until(lambda: len(runs) >= 2, within=2)
    assert loops.running == ["flaky"]
    assert crash_logged(caplog, "unit.flaky")
    loops.start("idle", lambda: asyncio.Event().wait())
    loops.start("broken", broken, policy=Policy.FAIL)
    await until(lambda: loops.failed, within=2)
    assert failures == ["unit.broken"]
    assert loops.failed_task == "unit.broken"
    await until(lambda: loops.running == [], within=2)
    with caplog.at_level(logging.INFO, logger="fleetwatch.tasks"):
        assert await loops.aclose() == []  # the failure already cancelled the rest


async def test_the_monitor_reaper_restarts_after_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    """A bug in the reaper: logged as task.crashed monitor.reap, counted, and the reaper
    runs again (the monitor keeps all three loops)."""
    before = CRASHES["monitor.reap"]
    async with Monitor(MemoryStore(), MonitorSettings(reap_every=0.05)) as monitor:
        calls = crash_once(monitor, "reap")
        await until(lambda: len(calls) >= 3, within=5)
        assert sorted(monitor.loops.running) == ["nodes", "reap", "sync"]
    assert crash_logged(caplog, "monitor.reap")
    assert CRASHES["monitor.reap"] == before + 1
    assert exported_crashes("monitor.reap") == before + 1


async def test_the_discovery_follower_restarts_after_a_crash(
    registry: RunningRegistry, api: RegistryClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in the follower (not a registry error, which it handles): logged, counted, and
    the follower starts again, so the view still fills."""
    await api.register("llm", "a", {"host": "127.0.0.1", "port": 9})
    before = CRASHES["discovery.follow.llm"]
    async with DiscoveryClient(registry.url, token=TOKEN) as client:
        crash_once(client._registry, "instances", KeyError("index"))
        found = await client.instances("llm", passing=False)
        if not found:  # the first fetch was the crash: the restarted follower fills the view
            await until(lambda: client.cached("llm", passing=False), within=5)
        assert client.loops.running == ["follow.llm"]
    assert crash_logged(caplog, "discovery.follow.llm")
    assert CRASHES["discovery.follow.llm"] == before + 1
    assert exported_crashes("discovery.follow.llm") == before + 1


async def test_a_synchronous_read_starts_nothing(registry: RunningRegistry) -> None:
    """cached(), routable() and watch() read the view; only asynchronous reads follow."""
    async with DiscoveryClient(registry.url, token=TOKEN) as client:
        assert client.cached("llm") == []
        assert client.routable("llm") == ()
        client.watch("llm", lambda change: None)
        assert client.loops.running == []
        await client.follow("llm")
        assert client.loops.running == ["follow.llm"]


async def test_the_gateway_slo_reporter_restarts_after_a_crash(
    registry: RunningRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A KeyError while reporting SLIs no longer ends SLO reporting for good: logged,
    counted on the gateway's /metrics, and reporting goes on."""
    settings = GatewaySettings(
        service="llm", registry_url=registry.url, registry_token=TOKEN, slo_report_every=0.05
    )
    before = CRASHES["gateway.slo"]
    async with Gateway(settings) as gateway:
        calls = crash_once(gateway._registry, "slos", KeyError("service"))
        await until(lambda: len(calls) >= 3, within=5)
        assert sorted(gateway.loops.running) == ["load", "slo"]
        assert exported_crashes("gateway.slo", gateway.metrics_registry) == before + 1
    assert crash_logged(caplog, "gateway.slo")


async def test_a_crashed_child_watcher_fails_the_agent(
    registry: RunningRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """The child watcher is how the agent learns its server died: its crash fails the agent,
    which stops with reason crashed, drains, and exits 70."""
    before = CRASHES["agent.child"]

    async def broken() -> None:
        raise RuntimeError(INJECTED)

    async with OpenAIBackend() as backend:
        agent = Agent(agent_settings(registry, backend.url, llm={"kind": "openai"}))
        agent._watch_child = broken  # type: ignore[method-assign]
        code = await asyncio.wait_for(agent.run(handle_signals=False), 30)
    assert code == 70
    assert agent.state.stop_reason is StopReason.CRASHED
    assert "agent.child" in agent.state.stop_detail
    assert crash_logged(caplog, "agent.child")
    assert CRASHES["agent.child"] == before + 1


async def test_agent_load_publisher_restarts_after_a_crash(
    registry: RunningRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug while publishing load: logged, counted on the agent's /metrics, and load
    reports go on."""
    before = CRASHES["agent.load"]
    async with OpenAIBackend() as backend:
        agent = Agent(
            agent_settings(registry, backend.url, load_every=0.05, llm={"kind": "openai"})
        )
        calls = crash_once(agent._registry, "put_load", KeyError("load"))
        run = asyncio.create_task(agent.run(handle_signals=False))
        try:
            await until(lambda: len(calls) >= 2 and agent.state.load_reports >= 1, within=10)
            assert agent.http is not None
            async with httpx.AsyncClient(timeout=5) as http:
                page = (await http.get(f"{agent.http.url}/metrics")).text
            assert f'fleetwatch_task_crashes_total{{task="agent.load"}} {before + 1:.1f}' in page
            assert "load" in agent.loops.running
        finally:
            agent.request_stop(StopReason.REQUESTED)
            await asyncio.wait_for(run, 30)
    assert crash_logged(caplog, "agent.load")


async def test_a_cancellation_from_inside_a_loop_is_a_crash_not_a_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A loop ended by a CancelledError it did not ask for (something it awaited was
    cancelled) is counted and restarted; only a cancel of the loop itself stops it."""
    before = CRASHES["unit.inner"]
    runs: list[int] = []

    async def awaits_a_cancelled_future() -> None:
        runs.append(1)
        if len(runs) == 1:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.cancel()
            await future
        await asyncio.Event().wait()

    loops = Supervisor("unit", first_backoff=0.01)
    loops.start("inner", awaits_a_cancelled_future)
    await until(lambda: len(runs) >= 2, within=2)
    assert CRASHES["unit.inner"] == before + 1
    assert crash_logged(caplog, "unit.inner")
    assert await loops.aclose() == ["inner"]
    assert CRASHES["unit.inner"] == before + 1  # the stop itself is no crash


async def test_invalidate_keeps_following_a_followed_service(
    registry: RunningRegistry, api: RegistryClient
) -> None:
    """After invalidate(), a service that was followed is followed again, so synchronous
    readers (the gateway's router) see its instances without an asynchronous read."""
    await api.register("llm", "a", {"host": "127.0.0.1", "port": 9})
    async with DiscoveryClient(registry.url, token=TOKEN) as client:
        await client.instances("llm", passing=False)
        client.invalidate("llm")
        assert client.loops.running == ["follow.llm"]
        await until(lambda: client.cached("llm", passing=False), within=5)
