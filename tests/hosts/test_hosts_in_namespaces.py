"""Three hosts in network namespaces, each running `fleetwatch host`, the registry and the
gateway in the root namespace: orders start real servers where they should, refused orders
start nothing, a killed daemon drops no request and adopts its instances again, and a host is
cordoned and drained. Where namespaces cannot be made (or with FLEETWATCH_TEST_NETNS=0), each
host gets a loopback address of its own, and the output says which mode ran."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from fleetwatch.errors import Conflict
from fleetwatch.hosts import Order, OrderAction, OrderState
from fleetwatch.hosts._client import HostsClient
from fleetwatch.registry import InstanceStatus
from fleetwatch_testing.llama import ensure_model
from fleetwatch_testing.netns import SimulatedHosts
from tests._support.host_fleet import (
    FAST,
    LLAMA,
    STATIC,
    Fleet,
    fleet_gateway,
    host_token,
    hosts_up,
    running_fleet,
)
from tests._support.host_fleet import FLEET_TOKEN as TOKEN
from tests._support.rollouts import Traffic

pytestmark = pytest.mark.serial  # namespaces and real servers: one module at a time


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """3 hosts, the registry, and a daemon on each, for the whole module."""
    with running_fleet(tmp_path_factory.mktemp("hosts")) as running:
        yield running


async def _until_finished(api: HostsClient, host: str, order_id: str, within: float) -> Order:
    async with asyncio.timeout(within):
        while True:
            found = await api.order(host, order_id)
            if found is not None and found.state.finished:
                return found
            await asyncio.sleep(0.2)


async def _order(fleet: Fleet, host: int, order: Order, within: float = 60) -> Order:
    async with fleet.client() as api:
        await api.add_order(order.with_changes(host_id=f"h{host}"))
        return await _until_finished(api, f"h{host}", order.order_id, within)


def _start(order_id: str, service: str, profile: str, **params: str) -> Order:
    return Order(order_id, "h0", OrderAction.START, service, profile, "1", params)


def _stop(order_id: str, service: str, instance_id: str) -> Order:
    return Order(order_id, "h0", OrderAction.STOP, service, instance_id=instance_id)


async def test_an_order_starts_llama_on_host_2_and_a_stop_drains_it(fleet: Fleet) -> None:
    """A start order runs llama.cpp on h1 under its address, serving through the gateway; a
    stop order drains it first, so a stream in flight finishes."""
    await hosts_up(fleet, 3)
    started = await _order(
        fleet, 1, _start("llama-1", LLAMA, "llama", model=ensure_model().name), 90
    )
    assert started.state is OrderState.AVAILABLE, started.reason
    async with fleet.client() as api:
        _, [instance] = await api.instances(LLAMA)
        assert (instance.host, instance.metadata["host_id"]) == (fleet.sim.hosts[1].address, "h1")
        assert (await api.host("h1")).instances == {instance.instance_id: LLAMA}
    async with (
        fleet_gateway(fleet, LLAMA) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=60) as http,
    ):
        body = {
            "messages": [{"role": "user", "content": "Count to twenty."}],
            "max_tokens": 120,
            "stream": True,
        }

        first_chunk = asyncio.Event()

        async def stream() -> tuple[bool, int]:
            chunks = 0
            async with http.stream("POST", "/v1/chat/completions", json=body) as reply:
                assert reply.status_code == 200
                async for line in reply.aiter_lines():
                    chunks += line.startswith("data: {")
                    if chunks:
                        first_chunk.set()
                    if line == "data: [DONE]":
                        return True, chunks
            return False, chunks

        in_flight = asyncio.create_task(stream())
        async with asyncio.timeout(30):
            await first_chunk.wait()
        # The stop is ordered while the stream is still running (its length is the model's
        # choice, so the test checks that it was in flight rather than counting chunks).
        ordered_mid_stream = not in_flight.done()
        stopped = await _order(fleet, 1, _stop("llama-1-stop", LLAMA, instance.instance_id), 60)
        done, chunks = await in_flight
    assert stopped.state is OrderState.STOPPED, stopped.reason
    assert ordered_mid_stream
    assert done
    assert chunks > 0
    async with fleet.client() as api:
        assert (await api.instances(LLAMA))[1] == []
        assert (await api.host("h1")).instances == {}


async def test_refused_orders_are_recorded_and_start_nothing(fleet: Fleet, tmp_path: Path) -> None:
    """An unknown profile, '..', a symlink out and a ';' are refused on the feed; nothing runs."""
    await hosts_up(fleet, 3)
    outside = tmp_path / "outside.gguf"
    outside.write_text("not a model")
    link = ensure_model().parent / f"fw-test-escape-{os.getpid()}.gguf"
    link.symlink_to(outside)
    try:
        orders = {
            "bad-profile": _start("bad-profile", LLAMA, "bash"),
            "bad-dotdot": _start("bad-dotdot", LLAMA, "llama", model=f"../{outside.name}"),
            "bad-link": _start("bad-link", LLAMA, "llama", model=link.name),
            "bad-semicolon": _start("bad-semicolon", LLAMA, "llama", model="x.gguf;reboot"),
        }
        results = {name: await _order(fleet, 0, order, 20) for name, order in orders.items()}
    finally:
        link.unlink()
    assert {r.state for r in results.values()} == {OrderState.REFUSED}
    assert "unknown launch profile" in results["bad-profile"].reason
    assert "outside" in results["bad-dotdot"].reason
    assert "outside" in results["bad-link"].reason
    assert "not allowed" in results["bad-semicolon"].reason
    assert fleet.records(0) == []
    async with fleet.client() as api:
        assert (await api.host("h0")).instances == {}
    # And a host's token cannot read another host's feed.
    async with fleet.client(host_token(0)) as h0:
        with pytest.raises(Exception, match="403"):
            await h0.orders("h1")


def _exec_d_server(agent_pid: int) -> psutil.Process | None:
    """The agent's child once it runs the static server's command, else None."""
    for child in psutil.Process(agent_pid).children():
        with contextlib.suppress(psutil.Error):
            if "http.server" in child.cmdline():
                return child
    return None


async def test_a_profile_user_runs_the_server_as_that_user(fleet: Fleet) -> None:
    """The static profile names user nobody: its server runs with nobody's uid, and without
    the registry's or the host's token in its environment."""
    await hosts_up(fleet, 3)
    async with fleet.client() as api:
        await api.add_order(_start("static-1", STATIC, "static"))
        async with asyncio.timeout(30):
            while not (records := fleet.records(0)) or records[0]["pid"] == 0:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.2)
            # Until the child has exec'd, it is a fork of the agent, with the agent's uid change
            # already made but the agent's environment still in place: wait for the server.
            while not (server := _exec_d_server(int(records[0]["pid"]))):  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.2)
        assert server.uids().real == pwd.getpwnam("nobody").pw_uid
        # Neither the registry token nor the host's own reaches the server it runs.
        environ = set(server.environ())
        assert "FLEETWATCH_TOKEN" not in environ
        assert "FW_TEST_HOST0" not in environ  # h0's token_env (the test sets every host's)
        stop = _stop("static-1-stop", STATIC, str(records[0]["instance_id"]))
        assert (await _order(fleet, 0, stop, 60)).state is OrderState.STOPPED


async def test_a_killed_daemon_fails_no_request_and_adopts_its_instances(fleet: Fleet) -> None:
    """SIGKILL h2's daemon under traffic to its two instances: no request fails; started
    again, it adopts both (one recorded by an older version) and starts nothing twice."""
    await hosts_up(fleet, 3)
    for n in (1, 2):
        done = await _order(fleet, 2, _start(f"fast-{n}", FAST, "fast"), 60)
        assert done.state is OrderState.AVAILABLE, done.reason
    async with fleet_gateway(fleet, FAST) as gateway:
        traffic = Traffic(gateway.url, clients=8)
        traffic.start()
        await asyncio.sleep(1.0)
        fleet.kill_daemon(2)
        await asyncio.sleep(2.0)
        # One record as an older fleetwatch wrote it: no format, fewer fields.
        records = sorted((fleet.state_dirs[2] / "instances").glob("*.json"))
        old = json.loads(records[0].read_text())
        old = {k: old[k] for k in ("instance_id", "service", "order_id", "pid", "create_time")}
        records[0].write_text(json.dumps({**old, "fleetwatch_version": "0.0.1"}))
        fleet.start_daemon(2)
        async with asyncio.timeout(20):
            while fleet.daemon_log(2).count("host.adopted") < 2:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        await traffic.stop()
    assert traffic.failures == []
    assert traffic.sent > 50
    async with fleet.client() as api:
        _, instances = await api.instances(FAST)
        assert len(instances) == 2
        assert {i.status for i in instances} == {InstanceStatus.AVAILABLE}
        assert len((await api.host("h2")).instances) == 2
        # Delivered again, an order already carried out starts nothing.
        _again, created = await api.add_order(
            _start("fast-1", FAST, "fast").with_changes(host_id="h2")
        )
        assert not created
    await asyncio.sleep(1.0)
    assert len(fleet.records(2)) == 2


async def test_cordon_then_drain_through_the_cli(fleet: Fleet) -> None:
    """`hosts cordon h2` refuses new starts; `hosts drain h2` stops its instances one by one."""
    env = {**os.environ, "FLEETWATCH_TOKEN": TOKEN, "FLEETWATCH_REGISTRY": fleet.registry_url}

    async def cli(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fleetwatch", "hosts", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        return proc.returncode or 0, out.decode()

    async with fleet.client() as api:
        if not (await api.host("h2")).instances:  # alone, this test starts its own instance
            await _order(fleet, 2, _start("fast-drain", FAST, "fast"), 60)
        count = len((await api.host("h2")).instances)
        code, out = await cli("cordon", "h2")
        assert code == 0, out
        with pytest.raises(Conflict, match="cordoned"):
            await api.add_order(_start("after-cordon", FAST, "fast").with_changes(host_id="h2"))
        code, out = await cli("drain", "h2")
        assert code == 0, out
        assert out.count(" stopped: ") == count
        assert (await api.host("h2")).instances == {}
        assert (await api.instances(FAST))[1] == []
        code, listing = await cli()
        assert code == 0
        assert "cordoned" in listing
        await api.cordon("h2", False)


def test_simulated_hosts_leave_nothing_behind() -> None:
    """Leaving SimulatedHosts kills what runs inside and removes every namespace and link."""
    with SimulatedHosts(2) as sim:
        sleeper = subprocess.Popen(sim.hosts[1].command(["sleep", "60"]))
        time.sleep(0.2)
    sleeper.wait(timeout=5)
    assert sleeper.returncode is not None
    assert sim.leftovers() == []
