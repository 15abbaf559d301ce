"""The proof: a rollout of three real llama.cpp servers under load drops nothing, and the
same replacement done as plain restarts without a drain drops requests."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.discovery import RegistryClient
from fleetwatch.gateway import Gateway, GatewaySettings
from fleetwatch.rollout import Rollout
from fleetwatch_testing.hand_started import launch
from fleetwatch_testing.llama import llama_server_template
from tests._support.registry_node import TOKEN, RunningRegistry
from tests._support.rollouts import SERVICE, settings, start_fleet

# Needs the machine to itself: llama.cpp servers rolled under load; every failed request counts.
# make test runs it in its one-at-a-time phase.
pytestmark = pytest.mark.serial

MODEL = "SmolLM2-135M-Instruct"


def _plan(registry: RunningRegistry, tmp_path: Path, version: str) -> Any:
    return settings(
        registry,
        tmp_path,
        version=version,
        launch=llama_server_template(),
        kind="llamacpp",
        model=MODEL,
        ready_timeout=60,
    )


async def test_rollout_of_three_llama_servers_under_load_fails_no_request(
    registry: RunningRegistry, api: RegistryClient, tmp_path: Path, reaper: Any, traffic: Any
) -> None:
    """20 clients (10 streaming) through the gateway during a full rollout: 0 failures."""
    await start_fleet(api, _plan(registry, tmp_path, "1"), 3, reaper)
    gw = GatewaySettings(service=SERVICE, registry_url=registry.url, registry_token=TOKEN)
    async with Gateway(gw) as gateway, gateway.server() as server:
        load = traffic(server.url, clients=20, model=MODEL, max_tokens=8)
        await asyncio.sleep(2.0)
        report = await Rollout(_plan(registry, tmp_path, "2"), say=lambda _: None).run()
        reaper.extend(report.pids.values())
        await asyncio.sleep(1.0)
        await load.stop()
    _, instances = await api.instances(SERVICE)
    assert report.ok, report.reason
    assert sorted(i.version for i in instances) == ["2", "2", "2"]
    assert load.sent >= 100
    assert load.failures == []


async def test_plain_restarts_without_a_drain_fail_requests(
    registry: RunningRegistry, api: RegistryClient, tmp_path: Path, reaper: Any, traffic: Any
) -> None:
    """The same replacement as kill-and-start (no drain): in-flight requests fail."""
    fleet = await start_fleet(api, _plan(registry, tmp_path, "1"), 3, reaper)
    gw = GatewaySettings(service=SERVICE, registry_url=registry.url, registry_token=TOKEN)
    async with Gateway(gw) as gateway, gateway.server() as server:
        load = traffic(server.url, clients=20, model=MODEL, max_tokens=32)
        await asyncio.sleep(2.0)
        new_plan = _plan(registry, tmp_path, "2")
        for old in fleet:
            os.killpg(old.pid, signal.SIGKILL)  # a plain restart: stop now, start the new one
            new = launch(new_plan)
            reaper.append(new.pid)
            await asyncio.sleep(1.5)
        await asyncio.sleep(3.0)
        await load.stop()
    # A floor that proves traffic ran through the restarts: three llama.cpp servers loading
    # their model on 2 shared cores serve 20 clients some 45-60 replies of 32 tokens here.
    assert load.sent >= 30, f"only {load.sent} requests were sent"
    assert len(load.failures) > 0
