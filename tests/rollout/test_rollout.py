"""``fleetwatch rollout`` with fast real servers under real agents, through a real gateway."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from fleetwatch.discovery import RegistryClient
from fleetwatch.gateway import Gateway, GatewaySettings
from fleetwatch.rollout import Rollout
from fleetwatch_testing import spawned
from fleetwatch_testing.hand_started import alive
from tests._support.registry_node import TOKEN, RunningRegistry
from tests._support.rollouts import FAST_SERVER, SERVICE, settings, start_fleet


async def _versions(api: RegistryClient) -> dict[str, str]:
    _, found = await api.instances(SERVICE)
    return {i.instance_id: i.version for i in found}


async def test_rollout_under_traffic_drops_no_request(
    registry: RunningRegistry, api: RegistryClient, tmp_path: Path, reaper: Any, traffic: Any
) -> None:
    """Three instances, twenty clients (half streaming) through the gateway, a full rollout:
    every instance ends on version 2, and not one request failed."""
    old = settings(registry, tmp_path, version="1")
    fleet = await start_fleet(api, old, 3, reaper)
    gw_settings = GatewaySettings(service=SERVICE, registry_url=registry.url, registry_token=TOKEN)
    async with Gateway(gw_settings) as gateway, gateway.server() as server:
        load = traffic(server.url)
        await asyncio.sleep(1.0)
        report = await Rollout(settings(registry, tmp_path), say=lambda _: None).run()
        reaper.extend(report.pids.values())
        await asyncio.sleep(1.0)
        await load.stop()
    versions = await _versions(api)
    assert report.ok, report.reason
    assert sorted(versions.values()) == ["2", "2", "2"]
    assert sorted(report.retired) == sorted(one.instance_id for one in fleet)
    assert load.sent > 100
    assert load.failures == []
    for one in fleet:  # the old agents drained and exited with their servers
        assert not alive(one.pid)


async def test_a_version_that_never_gets_ready_stops_the_rollout_safely(
    registry: RunningRegistry, api: RegistryClient, tmp_path: Path, reaper: Any
) -> None:
    """Not available by --ready-timeout: the new instance is stopped, no old one is touched,
    and the rollout says why."""
    old = settings(registry, tmp_path, version="1")
    fleet = await start_fleet(api, old, 2, reaper)
    broken = settings(
        registry,
        tmp_path,
        launch=f"{sys.executable} -c 'import time; time.sleep(60)' {{port}}",
        ready_timeout=3,
    )
    report = await Rollout(broken, say=lambda _: None).run()
    reaper.extend(report.pids.values())
    assert not report.ok
    assert "not available within 3s" in report.reason
    assert report.retired == []
    assert report.stopped == report.started
    assert await _versions(api) == {one.instance_id: "1" for one in fleet}


async def test_a_canary_that_fails_more_stops_the_rollout(
    registry: RunningRegistry, api: RegistryClient, tmp_path: Path, reaper: Any, traffic: Any
) -> None:
    """The canary answers 500 to unary requests (its streamed health probe passes): its error
    rate beats the old version's, the rollout stops."""
    old = settings(registry, tmp_path, version="1")
    fleet = await start_fleet(api, old, 2, reaper)
    gw_settings = GatewaySettings(
        service=SERVICE, registry_url=registry.url, registry_token=TOKEN, strategy="round-robin"
    )
    async with Gateway(gw_settings) as gateway, gateway.server() as server:
        load = traffic(server.url, clients=4)
        bad = settings(
            registry,
            tmp_path,
            launch=f"{FAST_SERVER} --mode fail-unary",
            canary=True,
            canary_soak=3,
            gateway_url=server.url,
        )
        report = await Rollout(bad, say=lambda _: None).run()
        reaper.extend(report.pids.values())
        await load.stop()
    assert not report.ok
    assert report.reason.startswith("canary regressed: error rate")
    assert report.canary is not None
    assert report.canary["new"]["error_rate"] > 0.1
    assert await _versions(api) == {one.instance_id: "1" for one in fleet}


async def test_undo_rolls_back_to_the_recorded_version(
    registry: RunningRegistry, api: RegistryClient, tmp_path: Path, reaper: Any
) -> None:
    """Version 1 rolled onto this machine from nothing, then 2: ``fleetwatch rollout --undo
    --json`` writes revision 3 with revision 1's spec and runs the launch command this
    machine recorded for it."""
    first = await Rollout(
        settings(registry, tmp_path, version="1", replicas=1), say=lambda _: None
    ).run()
    reaper.extend(first.pids.values())
    assert first.ok, first.reason
    forward = await Rollout(settings(registry, tmp_path), say=lambda _: None).run()
    reaper.extend(forward.pids.values())
    assert forward.ok, forward.reason
    assert (first.revision, forward.revision) == (1, 2)
    async with spawned(
        sys.executable, "-m", "fleetwatch", "rollout", "--service", SERVICE, "--undo", "--json",
        "--registry", registry.url, "--token", TOKEN, "--log-dir", str(tmp_path / "logs"),
        "--ready-timeout", "30s",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ},
    ) as process:  # fmt: skip
        async with asyncio.timeout(90):
            out, err = await process.communicate()
    report = json.loads(out)
    reaper.extend(report["pids"].values())
    assert process.returncode == 0, err.decode()[-2000:]
    assert (report["version"], report["revision"]) == ("1", 3)
    assert sorted((await _versions(api)).values()) == ["1"]
