"""Deployments through the registry API, as the deployment tests write and watch them."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from fleetwatch.registry import InstanceStatus
from tests._support.host_fleet import FAST, Fleet
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
