"""Deployments carried out by the controller in `fleetwatch serve`, over three simulated hosts
(network namespaces, or loopback addresses) running `fleetwatch host`: spread placement, a
rollout under traffic through the gateway with no failed request, a version that never
becomes ready stopped at its deadline with the old one untouched, pause, resume and undo."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter
from collections.abc import Iterator

import pytest

from fleetwatch.hosts import OrderState
from tests._support.deploying import deploy, deployment, running, until_phase
from tests._support.host_fleet import FAST, Fleet, fleet_gateway, hosts_up, running_fleet
from tests._support.host_fleet import FLEET_TOKEN as TOKEN
from tests._support.rollouts import Traffic

# Namespaces and real servers: one module at a time. A test waits on two rollouts at most,
# whose bounds add up past the suite's 120 s default.
pytestmark = [pytest.mark.serial, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """3 hosts with 3 slots each, the registry with its controller, a daemon per host."""
    with running_fleet(tmp_path_factory.mktemp("deploy")) as running:
        yield running


async def roll_under_traffic(fleet: Fleet, version: str) -> Traffic:
    """Roll to ``version`` (surge 1, none unavailable) while 10 clients, half streaming, call
    through the gateway; their record once it is complete and they sent at least 300."""
    async with fleet_gateway(fleet, FAST) as gateway:
        traffic = Traffic(gateway.url, clients=10)
        traffic.start()
        await asyncio.sleep(1.0)
        target = await deploy(fleet, version, max_surge="1", max_unavailable="0")
        await until_phase(fleet, target["revision"], "complete", 120)
        while traffic.sent < 300:  # noqa: ASYNC110 - counting the clients' requests
            await asyncio.sleep(0.1)
        await traffic.stop()
    return traffic


async def test_a_deployment_spreads_over_the_hosts(fleet: Fleet) -> None:
    """Three replicas on three hosts: one each, as placement spreads them."""
    await hosts_up(fleet, 3)
    written = await deploy(fleet, "1")
    await until_phase(fleet, written["revision"], "complete", 60)
    assert Counter((await running(fleet))["1"]) == {"h0": 1, "h1": 1, "h2": 1}


async def test_a_rollout_under_traffic_fails_no_request(fleet: Fleet) -> None:
    """Version 2 rolled over version 1 with surge 1, while clients (half streaming) call
    through the gateway: no request fails, and each host ends with one new instance."""
    await hosts_up(fleet, 3)
    first = await deploy(fleet, "1")
    await until_phase(fleet, first["revision"], "complete", 60)
    traffic = await roll_under_traffic(fleet, "2")
    assert traffic.failures == []
    assert traffic.sent >= 300
    now = await running(fleet)
    assert list(now) == ["2"]
    assert Counter(now["2"]) == {"h0": 1, "h1": 1, "h2": 1}


async def test_a_version_that_never_gets_ready_fails_and_leaves_the_old_one(fleet: Fleet) -> None:
    """A revision whose servers never pass their health check is marked failed at its
    progress deadline, its new instances are stopped, and the old ones keep serving."""
    await hosts_up(fleet, 3)
    good = await deploy(fleet, "3")
    await until_phase(fleet, good["revision"], "complete", 60)
    bad = await deploy(fleet, "4", params={"mode": "draining"}, progress_deadline_s=8)
    failed = await until_phase(fleet, bad["revision"], "failed", 60)
    assert "deadline" in failed["progress"]["message"]
    await asyncio.sleep(2.0)
    now = await running(fleet)
    assert Counter(now["3"]) == {"h0": 1, "h1": 1, "h2": 1}
    assert "4" not in now


async def cli_process(fleet: Fleet, *args: str) -> asyncio.subprocess.Process:
    """`fleetwatch ARGS` started against the fleet's registry, its output on a pipe."""
    env = {**os.environ, "FLEETWATCH_TOKEN": TOKEN, "FLEETWATCH_REGISTRY": fleet.registry_url}
    env["COLUMNS"] = "200"
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleetwatch", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def cli(fleet: Fleet, *args: str) -> tuple[int, str]:
    """`fleetwatch ARGS` against the fleet's registry: exit code and output."""
    proc = await cli_process(fleet, *args)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


async def table_row(
    proc: asyncio.subprocess.Process, wanted: list[str], *, within: float
) -> list[str]:
    """The first row of the tables ``proc`` prints that equals ``wanted``; on timeout, the
    assertion names the last rows seen."""
    assert proc.stdout is not None
    seen: list[list[str]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while line := (await proc.stdout.readline()).decode():
                cells = [c.strip() for c in line.strip().strip("│").split("│")]
                if len(cells) == len(wanted):
                    seen.append(cells)
                    if cells == wanted:
                        return cells
    raise AssertionError(f"no row {wanted} within {within:g}s; last rows: {seen[-3:]}")


async def test_apply_pause_resume_and_undo_through_the_cli(fleet: Fleet) -> None:
    """`rollout SERVICE` (with a --param) follows a rollout to complete; paused, a new
    revision (only --version given: the rest from the current one) starts nothing; resumed, it
    rolls out (the parameter kept);
    `rollout undo` goes back to the revision before, as a new one, and `undo --to-revision`
    to a chosen one while `rollout status --watch` prints each change."""
    await hosts_up(fleet, 3)
    code, out = await cli(fleet, "rollout", FAST, "--profile", "fast", "--version", "5",
                          "--replicas", "3", "--param", "tokens=8")  # fmt: skip
    assert code == 0, out
    assert "complete" in out
    assert (await deployment(fleet))["spec"]["params"] == {"tokens": "8"}
    code, out = await cli(fleet, "rollout", "pause", FAST)
    assert code == 0, out
    assert "paused" in out
    code, out = await cli(fleet, "rollout", FAST, "--version", "6")
    assert code == 1, out  # it ends paused, not complete
    assert "paused" in out
    await asyncio.sleep(1.5)
    assert list(await running(fleet)) == ["5"]
    code, out = await cli(fleet, "rollout", "resume", FAST)
    assert code == 0, out
    paused = await deployment(fleet)
    assert paused["spec"]["params"] == {"tokens": "8"}
    await until_phase(fleet, paused["revision"], "complete", 60)
    assert list(await running(fleet)) == ["6"]
    code, out = await cli(fleet, "rollout", "undo", FAST)
    assert code == 0, out
    assert f"revision {paused['revision'] + 1} (version 5)" in out
    assert list(await running(fleet)) == ["5"]
    code, out = await cli(fleet, "rollout", "status")
    assert code == 0, out
    assert "complete" in out
    assert "controller:" in out
    # `fleetwatch status` shows the rollouts beside the instances.
    code, out = await cli(fleet, "status")
    assert code == 0, out
    assert "deployments" in out
    assert f"{FAST}" in out
    # `rollout status --watch` prints again as `undo --to-revision` rolls back to version 6.
    watcher = await cli_process(fleet, "rollout", "status", FAST, "--watch")
    try:
        code, out = await cli(fleet, "rollout", "undo", FAST, "--to-revision",
                              str(paused["revision"]))  # fmt: skip
        assert code == 0, out
        assert f"revision {paused['revision'] + 2} (version 6)" in out
        row = [FAST, str(paused["revision"] + 2), "6", "3", "complete", "complete"]
        assert await table_row(watcher, row, within=30) == row
        assert watcher.returncode is None  # watching on
    finally:
        watcher.kill()
        await watcher.wait()
    assert list(await running(fleet)) == ["6"]


async def test_serving_instances_of_a_host_whose_daemon_died_are_drained(fleet: Fleet) -> None:
    """h2's daemon SIGKILLed while its instance serves on: a rollout under traffic completes
    on h0 and h1, that instance drained through the registry (its agent then leaves), with no
    failed request; started again, the daemon reports the waiting stop order carried out."""
    await hosts_up(fleet, 3)
    base = await deploy(fleet, "5")
    await until_phase(fleet, base["revision"], "complete", 60)
    fleet.kill_daemon(2)
    [orphan] = [str(r["instance_id"]) for r in fleet.records(2)]
    traffic = await roll_under_traffic(fleet, "6")
    assert traffic.failures == []
    assert sorted(Counter((await running(fleet))["6"]).values()) == [1, 2]
    async with fleet.client() as api:
        assert orphan not in {i.instance_id for i in (await api.instances(FAST))[1]}
        [stop] = [o for o in (await api.orders("h2"))[1] if o.order_id == f"stop-{orphan}"]
        assert stop.state is OrderState.PENDING  # the daemon is down: nobody took it
        fleet.start_daemon(2)
        async with asyncio.timeout(30):
            while (now := await api.order("h2", stop.order_id)) and now.state is stop.state:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.2)
        assert now is not None
        assert now.state is OrderState.STOPPED
    assert "controller.drained" in fleet.nodes[0].log.read_text()


async def test_a_host_that_dies_mid_rollout_is_rescheduled_around(fleet: Fleet) -> None:
    """h2's daemon and its instances SIGKILLed as a rollout starts: its instances leave
    discovery, replacements go to h0 and h1, and the instances that really serve never drop
    below replicas - max_unavailable. (Runs last: h2 stays down.)"""
    await hosts_up(fleet, 3)
    base = await deploy(fleet, "7")
    await until_phase(fleet, base["revision"], "complete", 60)
    target = await deploy(fleet, "8", max_surge="1", max_unavailable="1")
    fleet.kill_daemon(2)
    for record in fleet.records(2):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(str(record["pid"])), signal.SIGKILL)
    lowest = 3
    async with asyncio.timeout(120):
        while True:
            now = await running(fleet)
            serving = sum(h != "h2" for hosts in now.values() for h in hosts)
            lowest = min(lowest, serving)
            found = await deployment(fleet)
            progress = found["progress"]
            if progress["revision"] == target["revision"] and progress["phase"] == "complete":
                break
            await asyncio.sleep(0.2)
    assert lowest >= 3 - 1
    final = await running(fleet)
    assert list(final) == ["8"]
    assert sorted(Counter(final["8"]).items()) in ([("h0", 1), ("h1", 2)], [("h0", 2), ("h1", 1)])
