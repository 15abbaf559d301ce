"""The pooled hosts the 100-host benchmark runs on (:mod:`fleetwatch_testing.host_pool`): four
hosts, two to a process, behave as four hosts. Each daemon has its own feed and launches
each instance as a process of its own (a stand-in whose agent runs in the pool); a rollout
over them fails no request, and SIGTERM to a stand-in drains its agent as it would a real
agent process."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import Iterator

import psutil
import pytest

from tests._support.deploying import deploy, running, until_phase
from tests._support.host_fleet import FAST, Fleet, fleet_gateway, hosts_up, running_fleet
from tests._support.rollouts import Traffic

pytestmark = [pytest.mark.serial, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """4 loopback hosts with 2 slots each, their daemons two to a pool process."""
    with running_fleet(
        tmp_path_factory.mktemp("pool"), 4, capacity=2, namespaces=False, per_pool=2
    ) as running_:
        yield running_


async def test_pooled_hosts_roll_a_deployment_with_no_failed_request(fleet: Fleet) -> None:
    """Four hosts in two processes: each reports as itself, takes one instance of four, and
    rolls to a new version under traffic with no failed request."""
    await hosts_up(fleet, 4)
    assert len(fleet.pools) == 2
    first = await deploy(fleet, "1", replicas=4)
    await until_phase(fleet, first["revision"], "complete", 60)
    assert Counter((await running(fleet))["1"]) == {"h0": 1, "h1": 1, "h2": 1, "h3": 1}
    async with fleet_gateway(fleet, FAST) as gateway:
        traffic = Traffic(gateway.url, clients=6)
        traffic.start()
        second = await deploy(fleet, "2", replicas=4, max_surge="1", max_unavailable="0")
        await until_phase(fleet, second["revision"], "complete", 120)
        while traffic.sent < 200:  # noqa: ASYNC110 - counting the clients' requests
            await asyncio.sleep(0.1)
        await traffic.stop()
    assert traffic.failures == []
    assert Counter((await running(fleet))["2"]) == {"h0": 1, "h1": 1, "h2": 1, "h3": 1}


async def test_each_pooled_instance_is_a_process_its_daemon_can_drain(fleet: Fleet) -> None:
    """The instance h1 runs is a process of its own, a child of its pool in a session of its
    own; SIGTERM to it drains its agent out of the registry, and it exits 0."""
    await hosts_up(fleet, 4)
    [record] = fleet.records(1)
    stand_in = psutil.Process(int(str(record["pid"])))
    assert stand_in.ppid() == fleet.pools[0].pid
    assert os.getsid(stand_in.pid) == stand_in.pid
    iid = str(record["instance_id"])
    os.kill(stand_in.pid, signal.SIGTERM)
    async with asyncio.timeout(30), fleet.client() as api:
        while iid in {i.instance_id for i in (await api.instances(FAST))[1]}:  # noqa: ASYNC110 - polling the registry
            await asyncio.sleep(0.2)
    async with asyncio.timeout(10):
        while stand_in.is_running() and stand_in.status() != psutil.STATUS_ZOMBIE:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.1)
    assert "agent.deregistered" in (fleet.logs / "pool-0.log").read_text()
