"""Self-registration: heartbeats, re-registration after a registry restart, removal."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager

from fleetwatch.discovery import Registered, RegistryClient, registration
from fleetwatch_testing import HttpBackend
from tests._support.registry_node import OPS_TOKEN, TOKEN, RunningRegistry


def _registered(
    registry: RunningRegistry, backend: HttpBackend
) -> AbstractAsyncContextManager[Registered]:
    """Register "llm/me" pointing at the backend, heartbeating every 100 ms."""
    return registration(
        "llm", "me", host="127.0.0.1", port=backend.port, registry_url=registry.url,
        token=TOKEN, ttl=3, heartbeat_every=0.1,
    )  # fmt: skip


async def _ids(api: RegistryClient) -> list[str]:
    return [i.instance_id for i in (await api.instances("llm"))[1]]


async def test_registers_heartbeats_and_deregisters(
    registry: RunningRegistry, api: RegistryClient, backend: HttpBackend
) -> None:
    """Inside the block the instance is registered and heartbeating; after it, gone."""
    async with _registered(registry, backend) as state:
        await asyncio.sleep(0.35)
        assert await _ids(api) == ["me"]
        assert state.heartbeats >= 2
    assert await _ids(api) == []


async def test_registers_again_after_a_registry_restart(
    registry: RunningRegistry, backend: HttpBackend
) -> None:
    """A heartbeat answered 404 (the registry lost its memory) makes it register again."""
    async with _registered(registry, backend) as state:
        await registry.stop()
        await registry.start()
        async with RegistryClient(registry.url, token=TOKEN) as api:
            async with asyncio.timeout(3):
                while await _ids(api) != ["me"]:  # noqa: ASYNC110 - another task registers
                    await asyncio.sleep(0.05)
        assert state.registrations == 2


async def test_operator_removal_stops_it(
    registry: RunningRegistry, api: RegistryClient, backend: HttpBackend
) -> None:
    """An operator's DELETE leaves a tombstone: the heartbeat gets 410 and stops for good."""
    async with _registered(registry, backend) as state:
        async with RegistryClient(registry.url, token=OPS_TOKEN) as ops:
            assert await ops.deregister("llm", "me")
        async with asyncio.timeout(3):
            while not state.gone:  # noqa: ASYNC110 - the heartbeat task sets it
                await asyncio.sleep(0.05)
        beats = state.heartbeats
        await asyncio.sleep(0.3)
        assert state.heartbeats == beats
    assert await _ids(api) == []
