"""Several `fleetwatch serve` nodes on one real Redis, over three simulated hosts: the leading
controller SIGKILLed while it rolls six real llama.cpp instances (SmolLM2) under SDK traffic,
half of it streaming (another node takes over and completes it, no request fails, no order is
carried out twice), and a leader SIGSTOPped past its lease, then resumed (it acts on nothing:
its lease is gone and its writes would be fenced).

Nodes 0 and 1 run the controller; node 2 runs none and is the one hosts and clients talk to,
so that pausing or killing a leader says something about the controller alone."""

from __future__ import annotations

import asyncio
import re
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwatch.hosts import OrderAction
from fleetwatch_testing import RedisServer, free_port
from tests._support.deploying import (
    deploy,
    deploy_llama,
    roll_llama_under_traffic,
    running,
    until_phase,
)
from tests._support.host_fleet import (
    FAST,
    LLAMA,
    Fleet,
    controller_lease,
    hosts_up,
    running_fleet,
    start_node,
    wait_for_leader,
)

# Namespaces, six llama.cpp servers and three nodes: one module at a time. The llama test
# waits on two rollouts and the traffic count, whose bounds add up past the suite's 120 s.
pytestmark = [pytest.mark.serial, pytest.mark.timeout(480)]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Three nodes on one Redis (two with a controller), three hosts with a daemon each and
    four slots: two llama.cpp instances each, a fast one, and room for a surge."""
    with (
        RedisServer() as redis,
        running_fleet(
            tmp_path_factory.mktemp("leaders"),
            nodes=3,
            store=redis.url,
            node_args=((), (), ("--no-controller",)),
            capacity=4,
        ) as running_fleet_,
    ):
        yield running_fleet_


async def start_orders(fleet: Fleet, service: str, revision: int) -> list[str]:
    """Every start order of ``service``'s ``revision`` on every host's feed."""
    async with fleet.client() as api:
        found = []
        for n in range(3):
            _, orders = await api.orders(f"h{n}")
            found += [
                o.order_id
                for o in orders
                if o.action is OrderAction.START
                and o.order_id.startswith(f"{service}-r{revision}-")
            ]
        return found


def launched_once(fleet: Fleet, orders: list[str]) -> bool:
    """Whether the hosts' daemons launched one instance for each of ``orders``, and no more
    (their logs)."""
    found: Counter[str] = Counter()
    for log in fleet.logs.glob("daemon-h*.log"):
        found.update(re.findall(r"host\.launched \S+ pid=\d+ for order (\S+)", log.read_text()))
    return {order: found[order] for order in orders} == dict.fromkeys(orders, 1)


async def test_the_leader_killed_mid_rollout_is_replaced(fleet: Fleet) -> None:
    """SIGKILL node 0 while it rolls six llama.cpp instances to version 2 under SDK traffic:
    node 1 takes the lease (a higher epoch) and completes; at least 300 requests, none failed;
    2 new instances per host; one start order per new instance, each launched once."""
    await hosts_up(fleet, 3)
    first = await deploy_llama(fleet, "1", "512")
    await until_phase(fleet, first["revision"], "complete", 120, service=LLAMA)
    before = controller_lease(fleet.registry_url)
    assert before is not None

    async def kill_the_leader() -> None:
        fleet.nodes[0].process.kill()
        await asyncio.to_thread(fleet.nodes[0].process.wait, 10)

    traffic, second = await roll_llama_under_traffic(
        fleet, "2", "1024", mid_rollout=kill_the_leader
    )
    after = controller_lease(fleet.registry_url)
    assert after is not None
    assert after["holder"] == fleet.nodes[1].node_id()
    assert int(str(after["epoch"])) > int(str(before["epoch"]))
    assert (traffic.failed, traffic.reasons, traffic.samples) == (0, {}, [])
    assert traffic.sent >= 300
    now = await running(fleet, LLAMA)
    assert list(now) == ["2"]
    assert Counter(now["2"]) == {"h0": 2, "h1": 2, "h2": 2}
    orders = await start_orders(fleet, LLAMA, second)
    assert len(orders) == 6
    assert launched_once(fleet, orders)


async def test_a_paused_leader_acts_on_nothing_when_it_resumes(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Node 0 comes back (a follower); node 1, the leader, is SIGSTOPped past its lease and
    node 0 takes over; SIGCONTed, node 1 finds its lease gone and writes nothing, while node 0
    deploys the fast service with one start order per instance, each launched once."""
    await hosts_up(fleet, 3)
    revived = start_node(tmp_path, 3, free_port(), fleet.serve_config, store=fleet.store, args=())
    fleet.nodes[0] = revived
    leader = fleet.nodes[1]
    leader.process.send_signal(signal.SIGSTOP)
    try:
        await asyncio.to_thread(wait_for_leader, revived, 30)
        fast = await deploy(fleet, "1", max_surge="1", max_unavailable="0")
    finally:
        leader.process.send_signal(signal.SIGCONT)
    await until_phase(fleet, fast["revision"], "complete", 120)
    await asyncio.sleep(2.0)  # the resumed node has run passes of its own by now
    log = leader.log.read_text(errors="replace")
    assert "controller.lease_lost" in log or "controller.fenced" in log
    lease = controller_lease(fleet.registry_url)
    assert lease is not None
    assert lease["holder"] == revived.node_id()
    orders = await start_orders(fleet, FAST, fast["revision"])
    assert len(orders) == 3
    assert launched_once(fleet, orders)
    assert Counter((await running(fleet))["1"]) == {"h0": 1, "h1": 1, "h2": 1}
