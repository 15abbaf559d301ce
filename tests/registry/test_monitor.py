"""The monitor against real HTTP servers: rise, crash and hang detection, fall, grace, operators."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from fleetwatch.registry._model import CheckSpec, CheckType, Instance, InstanceStatus
from fleetwatch.registry._monitor import Monitor, MonitorSettings
from fleetwatch.registry._prober import Prober
from fleetwatch.registry.stores import MemoryStore
from fleetwatch_testing import BackendProcess, HttpBackend, free_port

Predicate = Callable[[Instance], bool]


@pytest.fixture
async def monitored() -> AsyncIterator[tuple[MemoryStore, Monitor]]:
    """A store and a running monitor over it."""
    store = MemoryStore()
    async with Monitor(store, MonitorSettings(write_every=0.2)) as monitor:
        yield store, monitor


def _instance(port: int, name: str = "a", **check: object) -> Instance:
    spec = CheckSpec(**{"interval": 0.2, "timeout": 0.3, **check})  # type: ignore[arg-type]
    return Instance(service="llm", instance_id=name, host="127.0.0.1", port=port, check=spec)


async def _until(store: MemoryStore, name: str, predicate: Predicate, within: float) -> Instance:
    async with asyncio.timeout(within):
        while True:
            instance = await store.get("llm", name)
            assert instance is not None
            if predicate(instance):
                return instance
            await store.wait_for_change(await store.index(), 0.05)


def _status(status: InstanceStatus) -> Predicate:
    return lambda instance: instance.status is status


async def test_starting_becomes_available_after_rise(
    monitored: tuple[MemoryStore, Monitor], backend: HttpBackend
) -> None:
    """A healthy instance goes starting -> available after `rise` passing checks."""
    store, monitor = monitored
    await store.upsert(_instance(backend.port, rise=3))
    await monitor.sync()
    ready = await _until(store, "a", _status(InstanceStatus.AVAILABLE), within=5)
    assert ready.consecutive_successes >= 3
    assert ready.last_check_output.startswith("HTTP 200")


@contextlib.asynccontextmanager
async def _monitored_process() -> AsyncIterator[tuple[MemoryStore, BackendProcess]]:
    """A backend in its own process, registered with default-like checks, already available."""
    store = MemoryStore()
    with BackendProcess() as server:
        async with Monitor(store, MonitorSettings()) as monitor:
            await store.upsert(_instance(server.port, interval=1.0, timeout=0.75))
            await monitor.sync()
            await _until(store, "a", _status(InstanceStatus.AVAILABLE), within=10)
            yield store, server


async def test_crash_is_noticed_through_the_idle_connection() -> None:
    """SIGKILL: the kernel closes the socket; the re-probe is refused: unavailable at once."""
    async with _monitored_process() as (store, server):
        await asyncio.sleep(0.3)  # between two checks, the connection idle
        killed = time.monotonic()
        server.signal(signal.SIGKILL)  # not waiting for the exit: timing starts at the kill
        down = await _until(store, "a", _status(InstanceStatus.UNAVAILABLE), within=5)
        elapsed = time.monotonic() - killed
        await asyncio.to_thread(server.kill)
    assert elapsed < 0.5  # the check interval is 1 s: this came from the connection closing
    assert "refused" in down.last_check_output


async def test_hang_is_noticed_after_fall_timeouts_and_recovers() -> None:
    """SIGSTOP: checks time out, `fall` of them make it unavailable; SIGCONT brings it back."""
    async with _monitored_process() as (store, server):
        server.pause()
        stopped = time.monotonic()
        try:
            down = await _until(store, "a", _status(InstanceStatus.UNAVAILABLE), within=6)
            elapsed = time.monotonic() - stopped
        finally:
            server.resume()
        await _until(store, "a", _status(InstanceStatus.AVAILABLE), within=6)
    assert elapsed < 3.5
    assert down.consecutive_failures == 2
    assert "timed out" in down.last_check_output


async def test_5xx_goes_through_fall(
    monitored: tuple[MemoryStore, Monitor], backend: HttpBackend
) -> None:
    """One 503 is not enough; `fall` (here 3) consecutive ones make the instance unavailable."""
    store, monitor = monitored
    await store.upsert(_instance(backend.port, path="/status/503", fall=3))
    await store.set_status("llm", "a", InstanceStatus.AVAILABLE)
    await monitor.sync()
    failing = await _until(store, "a", lambda i: i.consecutive_failures >= 1, within=5)
    assert failing.status is InstanceStatus.AVAILABLE
    down = await _until(store, "a", _status(InstanceStatus.UNAVAILABLE), within=5)
    assert down.consecutive_failures == 3
    assert down.last_check_output == "HTTP 503"


async def test_slow_but_alive_does_not_flap(
    monitored: tuple[MemoryStore, Monitor], backend: HttpBackend
) -> None:
    """Answering in 1.5x the timeout every third check never makes the instance unavailable."""
    store, monitor = monitored
    await store.upsert(_instance(backend.port, path="/slow-every/3/0.3", timeout=0.2, interval=0.2))
    await monitor.sync()
    await _until(store, "a", _status(InstanceStatus.AVAILABLE), within=5)
    index = await store.index()
    await asyncio.sleep(3.0)
    changes = [e for e in await store.events_after(index) if e.type.value == "status_changed"]
    assert changes == []
    assert monitor.probes >= 12


async def test_startup_grace_keeps_a_loading_server_starting(
    monitored: tuple[MemoryStore, Monitor], backend: HttpBackend
) -> None:
    """Within its startup grace a failing instance stays starting; without grace it goes down."""
    store, monitor = monitored
    now = time.time()
    loading = _instance(backend.port, "loading", path="/status/503", startup_grace=60)
    impatient = _instance(backend.port, "impatient", path="/status/503", startup_grace=0)
    await store.upsert(loading.with_changes(registered_at=now))
    await store.upsert(impatient.with_changes(registered_at=now))
    await monitor.sync()
    await _until(store, "impatient", _status(InstanceStatus.UNAVAILABLE), within=5)
    still = await _until(store, "loading", lambda i: i.consecutive_failures >= 4, within=5)
    assert still.status is InstanceStatus.STARTING


async def test_operator_statuses_are_left_alone(
    monitored: tuple[MemoryStore, Monitor], backend: HttpBackend
) -> None:
    """Maintenance is an operator's: passing checks do not make the instance available again."""
    store, monitor = monitored
    await store.upsert(_instance(backend.port))
    await store.set_status("llm", "a", InstanceStatus.MAINTENANCE)
    await monitor.sync()
    await _until(store, "a", lambda i: i.consecutive_successes >= 3, within=5)
    stored = await store.get("llm", "a")
    assert stored is not None
    assert stored.status is InstanceStatus.MAINTENANCE


async def test_checked_instances_keep_their_lease(
    monitored: tuple[MemoryStore, Monitor], backend: HttpBackend
) -> None:
    """The monitor's checks renew the lease: a checked instance is not reaped as lapsed."""
    store, monitor = monitored
    await store.upsert(_instance(backend.port).with_changes(ttl=0.5))
    await monitor.sync()
    await asyncio.sleep(1.2)
    await monitor.reap()
    assert await store.get("llm", "a") is not None


def test_prober_runs_on_uvloop() -> None:
    """`fleetwatch serve` runs on uvloop (uvicorn picks it): the prober must work there too."""
    import uvloop  # noqa: PLC0415 - only this test needs it

    async def probe_twice() -> list[bool]:
        async with HttpBackend() as server:
            prober = Prober("127.0.0.1", server.port)
            results = [await prober.probe(2.0), await prober.probe(2.0)]
            prober.close()
        return [r.passed for r in results]

    assert uvloop.run(probe_twice()) == [True, True]


async def test_agent_held_instance_is_judged_by_its_agent() -> None:
    """A ttl instance with an agent: the monitor probes only the agent (never the model
    server: no double token spend), and marks the instance unavailable when the agent is gone."""
    store = MemoryStore()
    async with HttpBackend() as server, HttpBackend() as agent:
        spec = CheckSpec(type=CheckType.TTL, agent_port=agent.port, agent_path="/health",
                         interval=0.2, timeout=0.2)  # fmt: skip
        held = Instance(
            service="llm", instance_id="a", host="127.0.0.1", port=server.port, check=spec
        )
        await store.upsert(held.with_changes(status=InstanceStatus.AVAILABLE))
        async with Monitor(store, MonitorSettings(write_every=0.2)) as monitor:
            await monitor.sync()
            await asyncio.sleep(0.8)
            stored = await store.get("llm", "a")
            assert stored is not None
            assert stored.status is InstanceStatus.AVAILABLE
            assert monitor.probes >= 3
            await agent.aclose()
            down = await _until(store, "a", _status(InstanceStatus.UNAVAILABLE), within=5)
        async with httpx.AsyncClient() as client:
            server_hits = (await client.get(f"{server.url}/count")).json()["count"]
    assert down.last_check_output.startswith("agent: ")
    assert server_hits == 0


async def test_a_probe_cancelled_as_its_connection_is_refused_stops() -> None:
    """Cancelling a probe loop always stops it, even when the cancel lands as the connect is
    refused (Python 3.11's wait_for lost such cancels, and the monitor never closed)."""
    port = free_port()  # nothing listens: every connect is refused within microseconds

    survivors: list[asyncio.Task[None]] = []

    async def probe_until_cancelled() -> None:
        prober = Prober("127.0.0.1", port, path="/health")
        while not survivors:  # a survivor (the bug) is stopped by this flag, not by cancel
            await prober.probe(0.1)
            await asyncio.sleep(0.001)

    for attempt in range(600):
        task = asyncio.create_task(probe_until_cancelled())
        await asyncio.sleep(0.0005 * (attempt % 7))  # land the cancel at varied moments
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=0.5)
        if not done:
            survivors.append(task)
            break
    await asyncio.gather(*survivors, return_exceptions=True)
    assert survivors == []
