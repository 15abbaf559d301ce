"""Deployments through the registry API, as the deployment tests write and watch them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from fleetwatch.registry import InstanceStatus
from fleetwatch_testing.llama import ensure_model
from fleetwatch_testing.loadgen import SdkTraffic
from tests._support.host_fleet import FAST, LLAMA, Fleet, fleet_gateway
from tests._support.host_fleet import FLEET_TOKEN as TOKEN

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


async def deploy(
    fleet: Fleet, version: str, *, service: str = FAST, profile: str = "fast", **fields: Any
) -> dict[str, Any]:
    """Write a new revision of ``service``'s deployment (default: 3 replicas, fast profile)."""
    body = {"profile": profile, "version": version, "replicas": 3, **fields}
    async with httpx.AsyncClient(base_url=fleet.registry_url, headers=HEADERS) as http:
        reply = await http.put(f"/v1/deployments/{service}", json=body)
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result


async def deployment(fleet: Fleet, service: str = FAST) -> dict[str, Any]:
    """``service``'s deployment as the registry holds it."""
    async with httpx.AsyncClient(base_url=fleet.registry_url, headers=HEADERS) as http:
        reply = await http.get(f"/v1/deployments/{service}")
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result


async def until_phase(
    fleet: Fleet, revision: int, phase: str, within: float, *, service: str = FAST
) -> dict[str, Any]:
    """The deployment once its progress for ``revision`` reaches ``phase``.

    On timeout the assertion names the last progress seen, so that a slow or stuck rollout
    says which of the two it was.
    """
    found: dict[str, Any] = {}
    try:
        async with asyncio.timeout(within):
            while True:
                found = await deployment(fleet, service)
                progress = found["progress"]
                if progress["revision"] == revision and progress["phase"] == phase:
                    return found
                await asyncio.sleep(0.2)
    except TimeoutError:
        pass
    raise AssertionError(
        f"revision {revision} of {service} not {phase!r} within {within:g}s; "
        f"last seen: {found.get('progress')}"
    )


async def running(fleet: Fleet, service: str = FAST) -> dict[str, list[str]]:
    """Version -> host of each available instance of the service."""
    async with fleet.client() as api:
        _, instances = await api.instances(service)
    found: dict[str, list[str]] = {}
    for instance in instances:
        if instance.status is InstanceStatus.AVAILABLE:
            found.setdefault(instance.version, []).append(instance.metadata["host_id"])
    return found


async def deploy_llama(fleet: Fleet, version: str, ctx: str, **fields: Any) -> dict[str, Any]:
    """A revision of six llama.cpp instances (SmolLM2) of context ``ctx``."""
    params = {"model": ensure_model().name, "ctx": ctx}
    return await deploy(
        fleet, version, service=LLAMA, profile="llama", replicas=6, params=params, **fields
    )


async def roll_llama_under_traffic(
    fleet: Fleet,
    version: str,
    ctx: str,
    *,
    mid_rollout: Callable[[], Awaitable[None]] | None = None,
) -> tuple[SdkTraffic, int]:
    """Roll the six llama.cpp instances to ``version`` (surge 1, none unavailable) while six
    openai SDK clients, half streaming, call through the gateway; ``mid_rollout()`` once the
    first new instance is available. The clients' record once the rollout is complete and
    they sent at least 300, and the revision rolled out."""
    async with fleet_gateway(fleet, LLAMA) as gateway:
        traffic = SdkTraffic(f"{gateway.url}/v1", model="smol", clients=6, streaming=3)
        traffic.start()
        target = await deploy_llama(fleet, version, ctx, max_surge="1", max_unavailable="0")
        if mid_rollout is not None:
            async with asyncio.timeout(90):
                while version not in await running(fleet, LLAMA):  # noqa: ASYNC110 - another process
                    await asyncio.sleep(0.1)
            await mid_rollout()
        await until_phase(fleet, target["revision"], "complete", 180, service=LLAMA)
        async with asyncio.timeout(120):
            while traffic.sent < 300:  # noqa: ASYNC110 - counting the clients' requests
                await asyncio.sleep(0.2)
        await traffic.stop()
    return traffic, int(target["revision"])
