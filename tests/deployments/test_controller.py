"""The controller's decisions, pass by pass, over in-memory stores: what it orders, within
which limits, and that a leader that lost its lease can order nothing.

The hosts and instances here are records the test writes (no daemons run): each pass is
judged by the orders the controller writes, which is all it ever does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from fleetwatch.deployments import CanaryStep, DeploymentSpec, Phase
from fleetwatch.deployments import _controller as controller_module
from fleetwatch.deployments._controller import LEASE_NAME, Controller
from fleetwatch.deployments._store import MemoryDeploymentStore, put_spec
from fleetwatch.errors import Fenced, RegistryUnavailable
from fleetwatch.hosts import Host, MemoryHostStore, Order, OrderAction, OrderState
from fleetwatch.hosts._lease import Fence
from fleetwatch.hosts._model import TEMPLATE_META, template_id
from fleetwatch.registry import Instance, InstanceStatus

SERVICE = "llm"


class World:
    """Three hosts with two slots each, the instances the registry would list, two stores."""

    def __init__(self) -> None:
        self.hosts = MemoryHostStore()
        self.deployments = MemoryDeploymentStore(self.hosts)
        self.instances: dict[str, Instance] = {}
        #: Hosts whose daemon is down: they report no more and carry out nothing.
        self.down: set[str] = set()
        #: Instances their hosts run that the registry has lost (their heartbeats lapsed).
        self.lost: set[str] = set()
        #: The registry's store cannot be read: listing instances fails, as a Redis down does.
        self.unreachable = False
        #: Seconds listing the instances takes (a busy store).
        self.list_delay = 0.0

    async def drain(self, service: str, instance_id: str) -> None:
        """What the registry does when the controller drains an instance."""
        self.instances[instance_id] = replace(
            self.instances[instance_id], status=InstanceStatus.DRAINING
        )

    async def listed(self, service: str) -> list[Instance]:
        if self.unreachable:
            raise RegistryUnavailable("Redis store: GET index failed: ConnectionError")
        await asyncio.sleep(self.list_delay)
        return [
            i
            for i in self.instances.values()
            if i.service == service and i.instance_id not in self.lost
        ]

    def controller(self, node: str, **options: Any) -> Controller:
        return Controller(self.hosts, self.deployments, self.listed, node_id=node, **options)

    async def report_hosts(self, count: int = 3, capacity: int = 2) -> None:
        on = {h: {} for h in range(count)}
        for instance in self.instances.values():
            on[int(instance.metadata["host_id"][1:])][instance.instance_id] = SERVICE
        for n in range(count):
            if f"h{n}" not in self.down:
                host = Host(f"h{n}", f"10.0.0.{n}", capacity=capacity, instances=on[n])
                await self.hosts.put_host(host, ttl=60)

    async def orders(self, state: OrderState | None = None) -> list[Order]:
        found = []
        for n in range(3):
            found += (await self.hosts.orders(f"h{n}"))[1]
        return [o for o in found if state is None or o.state is state]

    async def carry_out(self, *, available: bool = True) -> None:
        """Do what the hosts would: each pending start becomes an instance, each stop removes
        one; then report the hosts again."""
        for order in await self.orders(OrderState.PENDING):
            if order.host_id in self.down:
                continue
            if order.action is OrderAction.START:
                iid = f"{SERVICE}-{order.order_id[-8:]}"
                self.instances[iid] = Instance(
                    service=SERVICE,
                    instance_id=iid,
                    host=order.host_id,
                    port=8000,
                    version=order.version,
                    status=InstanceStatus.AVAILABLE if available else InstanceStatus.STARTING,
                    metadata={"host_id": order.host_id, TEMPLATE_META: order.template},
                )
                done = OrderState.AVAILABLE if available else OrderState.STARTED
                await self.hosts.report(order.host_id, order.order_id, done, "", iid)
            else:
                self.instances.pop(order.instance_id, None)
                await self.hosts.report(order.host_id, order.order_id, OrderState.STOPPED, "", "")
        await self.report_hosts()


def spec(version: str, replicas: int = 3, **fields: str) -> DeploymentSpec:
    return DeploymentSpec(SERVICE, "fast", version, replicas, **fields)  # type: ignore[arg-type]


@pytest.fixture
async def world() -> World:
    """Three reported hosts and no deployment yet."""
    found = World()
    await found.report_hosts()
    return found


async def test_a_new_deployment_starts_its_replicas_spread_over_hosts(world: World) -> None:
    """Replicas 3 on 3 hosts of 2 slots: one start order per host, then complete."""
    await put_spec(world.deployments, spec("1"))
    leader = world.controller("a")
    await leader.step()
    starts = await world.orders(OrderState.PENDING)
    assert sorted(o.host_id for o in starts) == ["h0", "h1", "h2"]
    await world.carry_out()
    await leader.step()
    record = await world.deployments.deployment(SERVICE)
    assert record is not None
    assert record.progress.phase is Phase.COMPLETE


async def test_a_rollout_never_goes_below_replicas_minus_unavailable(world: World) -> None:
    """Surge 1, unavailable 0: at most 4 instances at a time, never fewer than 3 available,
    until all 3 run the new version."""
    await put_spec(world.deployments, spec("1"))
    leader = world.controller("a")
    await leader.step()
    await world.carry_out()
    await put_spec(world.deployments, spec("2", max_surge="1", max_unavailable="0"))
    for _ in range(12):
        await leader.step()
        live = [i for i in world.instances.values()]
        starting = await world.orders(OrderState.PENDING)
        assert len(live) + sum(o.action is OrderAction.START for o in starting) <= 4
        assert sum(i.status.routable for i in live) >= 3
        await world.carry_out()
    versions = sorted(i.version for i in world.instances.values())
    assert versions == ["2", "2", "2"]


async def test_a_new_leader_does_not_launch_again_what_the_old_one_ordered(world: World) -> None:
    """The leader orders 3 starts and dies before the hosts act; the next leader, reading the
    feeds, counts those orders and orders nothing more."""
    await put_spec(world.deployments, spec("1"))
    first = world.controller("a", lease_ttl=0.3)
    await first.step()
    assert len(await world.orders(OrderState.PENDING)) == 3
    await asyncio.sleep(0.5)  # the lease lapses: node a is gone
    second = world.controller("b")
    await second.step()
    assert second.lease is not None
    assert second.lease.epoch == 2
    assert len(await world.orders()) == 3


async def test_a_leader_that_lost_its_lease_orders_nothing(world: World) -> None:
    """Node a leads, stalls past its lease, node b takes over; a's pass, resumed with its old
    epoch, is refused by the store, and no order of a's lands."""
    await put_spec(world.deployments, spec("1"))
    stale = world.controller("a", lease_ttl=0.3)
    await stale.step()
    await world.carry_out()
    epoch = stale.lease.epoch if stale.lease else 0
    await put_spec(world.deployments, spec("2"))
    await asyncio.sleep(0.5)
    fresh = world.controller("b")
    await fresh.step()
    before = len(await world.orders())
    record = await world.deployments.deployment(SERVICE)
    assert record is not None
    hosts = [(h, True) for h in await world.hosts.hosts()]
    feeds = {h.host_id: (await world.hosts.orders(h.host_id))[1] for h, _ in hosts}
    with pytest.raises(Fenced):
        await stale.reconcile(record, hosts, feeds, Fence(LEASE_NAME, epoch))
    assert len(await world.orders()) == before


async def test_the_controller_freezes_while_the_store_is_unreachable(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Mid-rollout, the instances cannot be read: the running controller says it is frozen,
    orders nothing (no start, no stop: it never tears down what it cannot see) and lives on;
    once the store answers, it completes the rollout."""
    await put_spec(world.deployments, spec("1"))
    leader = world.controller("a", tick=0.01)
    await leader.step()
    await world.carry_out()
    await put_spec(world.deployments, spec("2", max_surge="1", max_unavailable="0"))
    await leader.step()
    await world.carry_out()
    before = await world.orders()
    world.unreachable = True
    running = asyncio.create_task(leader.run())
    try:
        await asyncio.sleep(0.3)  # some thirty passes
        assert not running.done()
        assert await world.orders() == before
        assert "controller.frozen a: the store is unreachable" in caplog.text
        world.unreachable = False
        async with asyncio.timeout(5):
            while (record := await world.deployments.deployment(SERVICE)) is None or (
                record.progress.phase is not Phase.COMPLETE
            ):
                await world.carry_out()
                await asyncio.sleep(0.02)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    await world.carry_out()  # complete once the last old one is ordered to stop
    assert sorted(i.version for i in world.instances.values()) == ["2", "2", "2"]


async def test_a_slow_pass_does_not_cost_the_lease(world: World) -> None:
    """Each pass takes longer than the lease (the store is slow to list instances): the lease
    is renewed beside the passes, so the leader keeps epoch 1 and no other node takes over."""
    await put_spec(world.deployments, spec("1"))
    world.list_delay = 0.5
    leader = world.controller("a", lease_ttl=0.3, tick=0.01)
    other = world.controller("b", lease_ttl=0.3)
    running = asyncio.create_task(leader.run())
    try:
        for _ in range(15):  # 1.5 s: three passes, five leases
            await asyncio.sleep(0.1)
            await other.step()
            assert other.lease is None
        assert not running.done()
        assert leader.lease is not None
        assert leader.lease.epoch == 1
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def test_old_instances_failing_checks_together_stay_until_new_ones_serve(
    world: World,
) -> None:
    """Mid-rollout (surge 1, unavailable 0) every old instance fails its checks at once, as on
    a swamped machine: none is stopped while no new one serves; once the checks pass again,
    the rollout completes."""
    await put_spec(world.deployments, spec("1"))
    leader = world.controller("a")
    await leader.step()
    await world.carry_out()
    old = set(world.instances)
    await put_spec(world.deployments, spec("2", max_surge="1", max_unavailable="0"))
    for iid in old:
        world.instances[iid] = replace(world.instances[iid], status=InstanceStatus.UNAVAILABLE)
    for _ in range(4):
        await leader.step()
        await world.carry_out(available=False)
    assert not [o for o in await world.orders() if o.action is OrderAction.STOP]
    assert old <= set(world.instances)
    for iid, instance in world.instances.items():
        world.instances[iid] = replace(instance, status=InstanceStatus.AVAILABLE)
    for _ in range(12):
        await leader.step()
        await world.carry_out()
    assert sorted(i.version for i in world.instances.values()) == ["2", "2", "2"]


async def test_a_new_instance_that_broke_after_starting_is_replaced(world: World) -> None:
    """Mid-rollout (surge 1, unavailable 0) a new instance turns unavailable and stays so past
    the grace: it is stopped and replaced, and the rollout completes instead of waiting on it
    for ever (no start fits beside it, and no old instance may go)."""
    await put_spec(world.deployments, spec("1"))
    leader = world.controller("a")
    await leader.step()
    await world.carry_out()
    await put_spec(world.deployments, spec("2", max_surge="1", max_unavailable="0"))
    await leader.step()
    await world.carry_out()
    [broken] = [i for i in world.instances.values() if i.version == "2"]
    long_ago = time.time() - controller_module.BROKEN_AFTER_S - 1
    world.instances[broken.instance_id] = replace(
        broken, status=InstanceStatus.UNAVAILABLE, status_since=long_ago
    )
    for _ in range(12):
        await leader.step()
        await world.carry_out()
    stops = [o for o in await world.orders() if o.action is OrderAction.STOP]
    assert broken.instance_id in {o.instance_id for o in stops}
    assert sorted(i.version for i in world.instances.values()) == ["2", "2", "2"]
    assert all(i.status is InstanceStatus.AVAILABLE for i in world.instances.values())


async def test_pending_starts_on_a_host_that_missed_a_report_still_count(world: World) -> None:
    """h2 misses one report with a start order pending: nothing is started in its place (that
    would pass the surge once h2 reports again); silent for a second lease, it is written off
    and the start goes to another host."""
    await put_spec(world.deployments, spec("1"))
    leader = world.controller("a")
    await leader.step()
    first = await world.orders()
    assert sorted(o.host_id for o in first) == ["h0", "h1", "h2"]
    await world.hosts.put_host(Host("h2", "10.0.0.2", capacity=2), ttl=0.3)
    await asyncio.sleep(0.4)  # past h2's lease, within a second one
    await leader.step()
    assert await world.orders() == first
    await asyncio.sleep(0.3)
    await leader.step()
    [replacement] = [o for o in await world.orders() if o not in first]
    assert replacement.host_id in ("h0", "h1")


async def test_a_failed_start_goes_to_another_host(world: World) -> None:
    """A start order that failed on h0 makes the next start of that template avoid h0."""
    await put_spec(world.deployments, spec("1", replicas=1))
    leader = world.controller("a")
    await leader.step()
    [first] = await world.orders(OrderState.PENDING)
    await world.hosts.report(first.host_id, first.order_id, OrderState.FAILED, "boom", "")
    await leader.step()
    [second] = await world.orders(OrderState.PENDING)
    assert second.host_id != first.host_id
    assert second.template == template_id("fast", "1", {})


async def test_old_instances_on_a_host_whose_daemon_is_down_are_drained(world: World) -> None:
    """h2's daemon stops reporting while its agent serves on: its old instance gets a stop
    order that waits on h2's feed and is drained through the registry, and the rollout
    completes on h0 and h1 without ever going below 3 available."""
    await put_spec(world.deployments, spec("1"))
    leader = world.controller("a", drain=world.drain)
    await leader.step()
    await world.carry_out()
    [on_h2] = [i for i in world.instances.values() if i.metadata["host_id"] == "h2"]
    world.down.add("h2")
    await world.hosts.put_host(Host("h2", "10.0.0.2", capacity=2), ttl=0.05)
    await asyncio.sleep(0.1)
    await put_spec(world.deployments, spec("2", max_surge="1", max_unavailable="0"))
    for _ in range(12):
        await leader.step()
        assert sum(i.status.routable for i in world.instances.values()) >= 3
        await world.carry_out()
    record = await world.deployments.deployment(SERVICE)
    assert record is not None
    assert record.progress.phase is Phase.COMPLETE
    new = [i for i in world.instances.values() if i.version == "2"]
    assert sorted(i.metadata["host_id"] for i in new) in (["h0", "h0", "h1"], ["h0", "h1", "h1"])
    assert world.instances[on_h2.instance_id].status is InstanceStatus.DRAINING
    [waiting] = [o for o in (await world.hosts.orders("h2"))[1] if o.action is OrderAction.STOP]
    assert (waiting.instance_id, waiting.state) == (on_h2.instance_id, OrderState.PENDING)


async def test_an_instance_the_registry_lost_is_waited_for_before_it_is_replaced(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """h1's instance lapses from the registry while h1 still runs it: no replacement is
    ordered within the grace (it may come back); after it, one is."""
    monkeypatch.setattr(controller_module, "LAPSED_GRACE_S", 0.5)
    await put_spec(world.deployments, spec("1"))
    leader = world.controller("a")
    await leader.step()
    await world.carry_out()
    [on_h1] = [i for i in world.instances.values() if i.metadata["host_id"] == "h1"]
    world.lost.add(on_h1.instance_id)
    await leader.step()
    await leader.step()
    assert await world.orders(OrderState.PENDING) == []
    record = await world.deployments.deployment(SERVICE)
    assert record is not None
    assert "1 lost by the registry" in record.progress.message
    await asyncio.sleep(0.6)
    await leader.step()
    [replacement] = await world.orders(OrderState.PENDING)
    assert replacement.action is OrderAction.START


def figures_of(new: dict[str, Any]) -> Any:
    """A gateway whose figures say ``new`` for version 2 and a clean record for version 1."""
    old = {"requests": 500, "failures": 0, "error_rate": 0.0, "latency_p99_s": 0.05}

    async def figures(url: str) -> Mapping[str, Mapping[str, Any]]:
        assert url == "http://gateway.test"
        return {"1": old, "2": new}

    return figures


CANARY = CanaryStep(gateway_url="http://gateway.test", soak_s=0)


async def _canary_rollout(world: World, figures: Any) -> Controller:
    """Version 1 complete on 3 hosts, then version 2 with a canary step, a few passes."""
    await put_spec(world.deployments, spec("1"))
    leader = world.controller("a", figures=figures)
    await leader.step()
    await world.carry_out()
    await leader.step()
    canary_spec = DeploymentSpec(SERVICE, "fast", "2", 3, max_surge="1", canary=CANARY)
    await put_spec(world.deployments, canary_spec)
    return leader


async def test_a_canary_that_fails_its_gates_is_undone(world: World) -> None:
    """One canary only while it soaks; failing the error-rate gate, it is stopped and the
    previous revision's spec is written back as a new revision, noting why."""
    bad = {"requests": 40, "failures": 20, "error_rate": 0.5, "latency_p99_s": 0.05}
    leader = await _canary_rollout(world, figures_of(bad))
    await leader.step()
    starts = [o for o in await world.orders(OrderState.PENDING) if o.action is OrderAction.START]
    assert len(starts) == 1  # the canary alone
    await world.carry_out()
    [canary] = [i.instance_id for i in world.instances.values() if i.version == "2"]
    for _ in range(3):  # available -> soak starts -> judged
        await leader.step()
    record = await world.deployments.deployment(SERVICE)
    assert record is not None
    assert (record.revision, record.spec.version) == (3, "1")
    assert record.progress.note.startswith("revision 2 undone: canary regressed: error rate")
    assert record.progress.canary_figures is not None
    assert record.progress.canary_figures["new"]["error_rate"] == 0.5
    stops = [o for o in await world.orders(OrderState.PENDING) if o.action is OrderAction.STOP]
    assert [o.instance_id for o in stops] == [canary]
    await world.carry_out()
    assert sorted(i.version for i in world.instances.values()) == ["1", "1", "1"]


async def test_a_canary_that_passes_lets_the_rollout_go_on(world: World) -> None:
    """A canary as good as the old version passes, and the rollout replaces all three."""
    good = {"requests": 40, "failures": 0, "error_rate": 0.0, "latency_p99_s": 0.05}
    leader = await _canary_rollout(world, figures_of(good))
    for _ in range(14):
        await leader.step()
        await world.carry_out()
    record = await world.deployments.deployment(SERVICE)
    assert record is not None
    assert (record.revision, record.progress.canary_verdict) == (2, "passed")
    assert record.progress.phase is Phase.COMPLETE
    assert sorted(i.version for i in world.instances.values()) == ["2", "2", "2"]


async def test_a_start_that_fails_on_the_only_host_fails_the_rollout() -> None:
    """One host, whose start of version 2 fails: nowhere else to try, so the rollout fails at
    once with the host's reason, and version 1's instance serves on."""
    world = World()
    await world.hosts.put_host(Host("h0", "10.0.0.0", capacity=2), ttl=60)
    await put_spec(world.deployments, spec("1", replicas=1, max_surge="1"))
    leader = world.controller("a")
    await leader.step()
    [first] = await world.orders(OrderState.PENDING)
    await world.hosts.report("h0", first.order_id, OrderState.AVAILABLE, "", "llm-one")
    world.instances["llm-one"] = Instance(
        service=SERVICE, instance_id="llm-one", host="10.0.0.0", port=8000, version="1",
        status=InstanceStatus.AVAILABLE,
        metadata={"host_id": "h0", TEMPLATE_META: first.template},
    )  # fmt: skip
    await put_spec(world.deployments, spec("2", replicas=1, max_surge="1"))
    await leader.step()
    [start] = await world.orders(OrderState.PENDING)
    await world.hosts.report("h0", start.order_id, OrderState.FAILED, "no GPU memory", "")
    await leader.step()
    await leader.step()
    record = await world.deployments.deployment(SERVICE)
    assert record is not None
    assert record.progress.phase is Phase.FAILED
    assert record.progress.message == "no host can start revision 2: h0: no GPU memory"
    assert [o for o in await world.orders(OrderState.PENDING)] == []
    assert [i.version for i in world.instances.values()] == ["1"]


async def test_a_start_that_fails_on_every_host_of_many_is_retried_later(world: World) -> None:
    """Three hosts each fail a start of version 2: the rollout does not fail (a fleet under
    load fails starts that succeed later); it waits out the hosts' penalty, version 1 serves."""
    await put_spec(world.deployments, spec("1"))
    leader = world.controller("a")
    await leader.step()
    await world.carry_out()
    await put_spec(world.deployments, spec("2", max_surge="1"))
    for _ in range(8):
        await leader.step()
        for order in await world.orders(OrderState.PENDING):
            if order.action is OrderAction.START:
                await world.hosts.report(
                    order.host_id, order.order_id, OrderState.FAILED, "no GPU memory", ""
                )
    record = await world.deployments.deployment(SERVICE)
    assert record is not None
    assert record.progress.phase is Phase.PROGRESSING
    failed = [o for o in await world.orders(OrderState.FAILED)]
    assert sorted(o.host_id for o in failed) == ["h0", "h1", "h2"]
    assert sorted(i.version for i in world.instances.values()) == ["1", "1", "1"]
