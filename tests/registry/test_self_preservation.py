"""Self-preservation and the reaper: no mass eviction when the registry is the one cut off."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from fleetwatch.registry._model import CheckSpec, CheckType, EventType, Instance, InstanceStatus
from fleetwatch.registry._monitor import Monitor, MonitorSettings
from fleetwatch.registry._preservation import PreservationPolicy
from fleetwatch.registry.stores import MemoryStore
from fleetwatch_testing import free_port


class Switchable:
    """A real TCP server speaking just enough HTTP, which can be 'cut off': it then keeps
    connections open and reads requests but never answers, as a network partition looks from
    the monitor's side (timeouts, not refusals)."""

    def __init__(self) -> None:
        self._answering = asyncio.Event()
        self._answering.set()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def answering(self) -> bool:
        """Whether requests get answers."""
        return self._answering.is_set()

    @answering.setter
    def answering(self, value: bool) -> None:
        if value:
            self._answering.set()
        else:
            self._answering.clear()

    async def __aenter__(self) -> Switchable:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                await self._answering.wait()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()


@pytest.fixture
async def fleet() -> AsyncIterator[list[Switchable]]:
    """Six switchable servers."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(Switchable()) for _ in range(6)]


async def _monitored(store: MemoryStore, fleet: list[Switchable]) -> None:
    for i, server in enumerate(fleet):
        spec = CheckSpec(interval=0.2, timeout=0.2, fall=2)
        instance = Instance(
            service="llm", instance_id=f"i{i}", host="127.0.0.1", port=server.port, check=spec
        )
        await store.upsert(instance.with_changes(status=InstanceStatus.AVAILABLE))


async def _statuses(store: MemoryStore) -> dict[str, InstanceStatus]:
    return {i.instance_id: i.status for i in await store.instances("llm")}


async def test_cut_off_from_most_of_the_fleet_evicts_no_one(fleet: list[Switchable]) -> None:
    """4 of 6 time out together: self-preservation holds them; it lets go once they answer."""
    store = MemoryStore()
    await _monitored(store, fleet)
    async with Monitor(store) as monitor:
        await monitor.sync()
        await asyncio.sleep(0.5)
        for server in fleet[:4]:
            server.answering = False
        await asyncio.sleep(1.5)
        during = await _statuses(store)
        engaged = monitor.preservation.engaged
        for server in fleet[:4]:
            server.answering = True
        await asyncio.sleep(1.0)
        after = await _statuses(store)
        released = not monitor.preservation.engaged
    assert engaged
    assert set(during.values()) == {InstanceStatus.AVAILABLE}
    assert released
    assert set(after.values()) == {InstanceStatus.AVAILABLE}
    assert monitor.preservation.engagements == 1
    notices = [e.type for e in await store.events_after(0) if e.is_notice]
    assert notices == [EventType.SELF_PRESERVATION_ENGAGED, EventType.SELF_PRESERVATION_RELEASED]


async def test_a_minority_failing_is_marked_unavailable(fleet: list[Switchable]) -> None:
    """2 of 6 timing out is not the registry's fault: they go unavailable as usual."""
    store = MemoryStore()
    await _monitored(store, fleet)
    async with Monitor(store) as monitor:
        await monitor.sync()
        for server in fleet[:2]:
            server.answering = False
        await asyncio.sleep(1.5)
        during = await _statuses(store)
        for server in fleet[:2]:
            server.answering = True
    assert not monitor.preservation.engaged
    assert [during[f"i{i}"] for i in range(6)] == [InstanceStatus.UNAVAILABLE] * 2 + [
        InstanceStatus.AVAILABLE
    ] * 4


def _ttl_instance(name: str, ttl: float) -> Instance:
    spec = CheckSpec(type=CheckType.TTL)
    return Instance(service="llm", instance_id=name, host="127.0.0.1", port=9, check=spec, ttl=ttl)


async def test_lapsed_agent_lease_is_evicted() -> None:
    """An agent-held (ttl) instance whose heartbeats stop is evicted, with the reason."""
    store = MemoryStore()
    monitor = Monitor(store)
    await store.upsert(_ttl_instance("agent", 0.2))
    await store.upsert(_ttl_instance("alive", 30))
    index = await store.index()
    await asyncio.sleep(0.3)
    await monitor.reap()
    events = await store.events_after(index)
    assert [(e.type, e.instance_id, e.reason) for e in events] == [
        (EventType.EVICTED, "agent", "lease lapsed")
    ]


async def test_leases_lapsing_together_are_not_evicted() -> None:
    """Most leases lapsing at once (Redis back after an outage, a partition) evicts no one."""
    store = MemoryStore()
    monitor = Monitor(store, MonitorSettings(preservation=PreservationPolicy(0.5, 5)))
    for i in range(6):
        await store.upsert(_ttl_instance(f"a{i}", 0.1 if i < 4 else 30))
    await asyncio.sleep(0.2)
    await monitor.reap()
    assert len(await store.instances("llm")) == 6
    assert monitor.lease_preservations == 1
    [notice] = [e for e in await store.events_after(0) if e.is_notice]
    assert notice.type is EventType.SELF_PRESERVATION_ENGAGED
    assert notice.reason == "4 of 6 leases lapsed together; not evicting"
    for i in range(4):
        await store.renew("llm", f"a{i}")
    await monitor.reap()
    assert len(await store.instances("llm")) == 6


async def test_unavailable_too_long_is_deregistered() -> None:
    """An instance unavailable for longer than deregister_after is removed."""
    store = MemoryStore()
    settings = MonitorSettings(deregister_after=0.3)
    spec = CheckSpec(interval=0.1, timeout=0.1)
    dead = Instance(
        service="llm", instance_id="dead", host="127.0.0.1", port=free_port(), check=spec
    )
    async with Monitor(store, settings) as monitor:
        await store.upsert(dead.with_changes(status=InstanceStatus.AVAILABLE))
        await monitor.sync()
        await asyncio.sleep(0.2)
        stored = await store.get("llm", "dead")
        assert stored is not None
        assert stored.status is InstanceStatus.UNAVAILABLE
        await asyncio.sleep(0.4)
        await monitor.reap()
    assert await store.get("llm", "dead") is None
    assert monitor.evictions == 1


async def test_maintenance_is_never_evicted() -> None:
    """An instance in maintenance keeps its place even when its lease lapses."""
    store = MemoryStore()
    monitor = Monitor(store)
    await store.upsert(_ttl_instance("parked", 0.1))
    await store.set_status("llm", "parked", InstanceStatus.MAINTENANCE)
    await asyncio.sleep(0.2)
    await monitor.reap()
    assert await store.get("llm", "parked") is not None


async def test_leases_lapsing_over_a_heartbeat_period_are_not_evicted() -> None:
    """Leases lapsing one after another (agents cut off at different moments) still count as
    lapsing together: after the first evictions, the rest are held."""
    store = MemoryStore()
    monitor = Monitor(store, MonitorSettings(preservation=PreservationPolicy(0.5, 5)))
    for i in range(6):
        await store.upsert(_ttl_instance(f"a{i}", 0.1 + 0.1 * i))
    for _ in range(8):
        await asyncio.sleep(0.1)
        await monitor.reap()
    remaining = len(await store.instances("llm"))
    assert monitor.lease_preservations >= 1
    assert remaining >= 3  # no more than half were evicted before it held


def test_unknown_fields_from_a_newer_node_are_ignored() -> None:
    """A store written by a newer fleetwatch (an extra field) still reads."""
    data = _ttl_instance("x", 1).to_dict()
    data["future_field"] = 1
    data["check"]["future_check_field"] = 2
    assert Instance.from_dict(data).instance_id == "x"
