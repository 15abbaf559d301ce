"""The demo's narrated LLM scenario: traffic through the gateway with the ``openai`` SDK, a
``kill -9`` of one instance, and a rollout to a second version under traffic, each with the
figures measured as it happens (time until the killed instance left discovery, failed
requests)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from fleetwatch.discovery import DiscoveryClient, RegistryClient
from fleetwatch.discovery._client import Change
from fleetwatch.registry._model import InstanceStatus
from fleetwatch.rollout import Rollout, RolloutSettings
from fleetwatch_testing.hand_started import Launched, alive, launch
from fleetwatch_testing.llama import llama_server_template
from fleetwatch_testing.llama_build import MODEL_NAME

if TYPE_CHECKING:
    from fleetwatch_testing.loadgen import SdkTraffic

SERVICE = "llm"
INSTANCES = 3


@dataclass
class Scenario:
    """Where things are, and what the scenario started (so it can all be stopped)."""

    registry_url: str
    gateway_url: str
    token: str
    log_dir: Path
    say: Callable[[str], None]
    pids: list[int] = field(default_factory=list)
    results: dict[str, object] = field(default_factory=dict)

    def plan(self, version: str, context: int) -> RolloutSettings:
        return RolloutSettings(
            service=SERVICE,
            launch=llama_server_template(context=context),
            version=version,
            registry_url=self.registry_url,
            token=self.token,
            kind="llamacpp",
            model=MODEL_NAME,
            ready_timeout=60,
            log_dir=self.log_dir,
            agent_args=("--propagation-delay", "1s"),
        )

    def traffic(self, *, streaming: int) -> SdkTraffic:
        # The openai SDK takes a second to import: every fleetwatch command would pay for it
        # (the CLI imports this module to build its options), so only the demo's run does.
        from fleetwatch_testing.loadgen import SdkTraffic  # noqa: PLC0415

        load = SdkTraffic(
            f"{self.gateway_url}/v1", MODEL_NAME, clients=6, streaming=streaming, max_tokens=8
        )
        load.start()
        return load

    async def start_fleet(self, api: RegistryClient) -> list[Launched]:
        """Three SmolLM2 instances (version 1, 512-token context) under agents."""
        fleet = [launch(self.plan("1", 512)) for _ in range(INSTANCES)]
        self.pids += [one.pid for one in fleet]
        for one in fleet:
            self.say(f"started {one.instance_id}: llama-server under an agent (log {one.log})")
        await self._until_available(api, {one.instance_id for one in fleet})
        return fleet

    async def _until_available(self, api: RegistryClient, ids: set[str]) -> None:
        async with asyncio.timeout(120):
            while True:
                _, found = await api.instances(SERVICE)
                up = {i.instance_id for i in found if i.status is InstanceStatus.AVAILABLE}
                if ids <= up:
                    return
                await asyncio.sleep(0.2)

    async def run(self) -> None:
        async with (
            RegistryClient(self.registry_url, token=self.token) as api,
            DiscoveryClient(client=api) as discovery,
        ):
            fleet = await self.start_fleet(api)
            url = f"{self.gateway_url}/v1"
            self.say(f"[bold]1. traffic[/]: 6 openai SDK clients through the gateway {url}")
            load = self.traffic(streaming=0)
            await asyncio.sleep(5)
            sent, failed = load.snapshot()
            self.say(f"   {sent} requests, {failed} failed")
            await self._kill_one(api, discovery, fleet[0], load)
            await load.stop()
            self.say(
                "[bold]3. rollout[/] to version 2 (1024-token context), "
                "under traffic (half streaming)"
            )
            load = self.traffic(streaming=3)
            await asyncio.sleep(2)
            report = await Rollout(
                self.plan("2", 1024), say=lambda line: self.say(f"   {line}")
            ).run()
            self.pids += list(report.pids.values())
            await asyncio.sleep(1)
            await load.stop()
            self.results["rollout"] = {
                "ok": report.ok,
                "requests": load.sent,
                "failed": load.failed,
                "seconds": report.duration_s,
            }
            verdict = "[green]0 failed[/]" if load.failed == 0 else f"[red]{load.failed} failed[/]"
            self.say(
                f"   rollout {'done' if report.ok else 'stopped: ' + report.reason} in "
                f"{report.duration_s:.1f}s; {load.sent} requests during it, {verdict}"
            )

    async def _kill_one(
        self, api: RegistryClient, discovery: DiscoveryClient, victim: Launched, load: SdkTraffic
    ) -> None:
        server_pid = await _child_pid(api, victim.instance_id)
        self.say(f"[bold]2. kill -9[/] of {victim.instance_id}'s llama-server (pid {server_pid})")
        left = asyncio.Event()

        def on_change(change: Change) -> None:
            if change.instance.instance_id == victim.instance_id and (
                change.kind == "deregistered" or not change.instance.status.routable
            ):
                left.set()

        unwatch = discovery.watch(SERVICE, on_change)
        await discovery.instances(SERVICE)
        sent_before, failed_before = load.snapshot()
        killed_at = time.perf_counter()
        os.kill(server_pid, signal.SIGKILL)
        try:
            async with asyncio.timeout(30):
                await left.wait()
        finally:
            unwatch()
        gone_ms = (time.perf_counter() - killed_at) * 1000
        await asyncio.sleep(3)
        sent, failed = load.snapshot()
        self.results["kill"] = {
            "left_discovery_ms": round(gone_ms, 1),
            "requests": sent - sent_before,
            "failed": failed - failed_before,
        }
        self.say(
            f"   out of discovery after {gone_ms:.0f} ms; {sent - sent_before} requests since, "
            f"{failed - failed_before} failed (requests cut by the kill were retried on another "
            "instance before any byte reached the client)"
        )
        replacement = launch(self.plan("1", 512))
        self.pids.append(replacement.pid)
        await self._until_available(api, {replacement.instance_id})
        self.say(f"   replacement {replacement.instance_id} available")

    async def stop(self) -> None:
        """Drain every instance through the registry; end any agent that lingers."""
        with contextlib.suppress(Exception):
            async with RegistryClient(self.registry_url, token=self.token) as api:
                _, instances = await api.instances(SERVICE)
                for instance in instances:
                    await api.set_status(SERVICE, instance.instance_id, InstanceStatus.DRAINING)
        deadline = time.monotonic() + 15
        # The agents are other processes: polling is the honest wait.
        while any(alive(pid) for pid in self.pids) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


async def _child_pid(api: RegistryClient, instance_id: str) -> int:
    """The server process an agent runs (from the agent's own endpoint)."""
    _, found = await api.instances(SERVICE)
    agent = next(i for i in found if i.instance_id == instance_id).metadata["agent"]
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        return int((await client.get(f"http://{agent}/v1/agent")).json()["child_pid"])
