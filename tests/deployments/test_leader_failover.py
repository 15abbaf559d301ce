"""Several `fleetwatch serve` nodes on one real Redis, over three simulated hosts: the leading
controller SIGKILLed mid-rollout (another takes over and completes it, no request fails, no
order is carried out twice), and a leader SIGSTOPped past its lease, then resumed (it acts on
nothing: its lease is gone and its writes would be fenced).

Nodes 0 and 1 run the controller; node 2 runs none and is the one hosts and clients talk to,
so that pausing or killing a leader says something about the controller alone."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwatch.hosts import OrderAction
from fleetwatch_testing import RedisServer, free_port
from tests._support.deploying import deploy, running, until_phase
from tests._support.host_fleet import (
    FAST,
    Fleet,
    controller_lease,
    fleet_gateway,
    hosts_up,
    running_fleet,
    start_node,
    wait_for_leader,
)
from tests._support.rollouts import Traffic

# Namespaces and real servers: one module at a time. A test waits on two rollouts at most,
# whose bounds add up past the suite's 120 s default.
pytestmark = [pytest.mark.serial, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Three nodes on one Redis (two with a controller), three hosts with a daemon each."""
    with (
        RedisServer() as redis,
        running_fleet(
            tmp_path_factory.mktemp("leaders"),
            nodes=3,
            store=redis.url,
            node_args=((), (), ("--no-controller",)),
        ) as running_fleet_,
    ):
        yield running_fleet_


async def start_orders(fleet: Fleet, revision: int) -> list[str]:
    """Every start order of ``revision`` on every host's feed."""
    async with fleet.client() as api:
        found = []
        for n in range(3):
            _, orders = await api.orders(f"h{n}")
            found += [
                o.order_id
                for o in orders
                if o.action is OrderAction.START and o.order_id.startswith(f"{FAST}-r{revision}-")
            ]
        return found


async def test_the_leader_killed_mid_rollout_is_replaced(fleet: Fleet) -> None:
    """SIGKILL node 0 while it rolls version 2: node 1 takes the lease (a higher epoch) and
    completes; 0 failed requests; one start order per new instance."""
    await hosts_up(fleet, 3)
    first = await deploy(fleet, "1")
    await until_phase(fleet, first["revision"], "complete", 60)
    before = controller_lease(fleet.registry_url)
    assert before is not None
    async with fleet_gateway(fleet, FAST) as gateway:
        traffic = Traffic(gateway.url, clients=10)
        traffic.start()
        second = await deploy(fleet, "2", max_surge="1", max_unavailable="0")
        async with asyncio.timeout(60):
            while "2" not in await running(fleet):  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.1)
        fleet.nodes[0].process.kill()
        fleet.nodes[0].process.wait(timeout=10)
        await until_phase(fleet, second["revision"], "complete", 120)
        while traffic.sent < 300:  # noqa: ASYNC110 - counting the clients' requests
            await asyncio.sleep(0.1)
        await traffic.stop()
    after = controller_lease(fleet.registry_url)
    assert after is not None
    assert after["holder"] == fleet.nodes[1].node_id()
    assert int(str(after["epoch"])) > int(str(before["epoch"]))
    assert traffic.failures == []
    now = await running(fleet)
    assert Counter(now["2"]) == {"h0": 1, "h1": 1, "h2": 1}
    assert len(await start_orders(fleet, second["revision"])) == 3


async def test_a_paused_leader_acts_on_nothing_when_it_resumes(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Node 0 comes back (a follower); node 1, the leader, is SIGSTOPped past its lease and
    node 0 takes over; SIGCONTed, node 1 finds its lease gone and writes nothing, while node 0
    rolls version 3 with one start order per instance."""
    await hosts_up(fleet, 3)
    revived = start_node(tmp_path, 3, free_port(), fleet.serve_config, store=fleet.store, args=())
    fleet.nodes[0] = revived
    leader = fleet.nodes[1]
    leader.process.send_signal(signal.SIGSTOP)
    try:
        await asyncio.to_thread(wait_for_leader, revived, 30)
        third = await deploy(fleet, "3", max_surge="1", max_unavailable="0")
    finally:
        leader.process.send_signal(signal.SIGCONT)
    await until_phase(fleet, third["revision"], "complete", 120)
    await asyncio.sleep(2.0)  # the resumed node has run passes of its own by now
    log = leader.log.read_text(errors="replace")
    assert "controller.lease_lost" in log or "controller.fenced" in log
    lease = controller_lease(fleet.registry_url)
    assert lease is not None
    assert lease["holder"] == revived.node_id()
    assert len(await start_orders(fleet, third["revision"])) == 3
    assert Counter((await running(fleet))["3"]) == {"h0": 1, "h1": 1, "h2": 1}
