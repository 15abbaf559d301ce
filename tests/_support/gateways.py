"""A gateway in this process over a real registry and real HTTP backends. Its ``gateways``
and ``backends`` fixtures are loaded for every test folder."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from fleetwatch.discovery import RegistryClient
from fleetwatch.gateway import Gateway, GatewaySettings
from fleetwatch.http1 import LeanServer
from fleetwatch.registry._model import InstanceStatus
from fleetwatch_testing.openai_backend import OpenAIBackend
from tests._support.registry_node import TOKEN, RunningRegistry
from tests._support.waiting import poll_until

SERVICE = "llm"


class RunningGateway:
    """A gateway served on a free port."""

    def __init__(self, gateway: Gateway, server: LeanServer) -> None:
        self.gateway = gateway
        self.server = server
        self.url = server.url

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        return f"{self.url}/v1"


@pytest.fixture
async def gateways(
    registry: RunningRegistry,
) -> AsyncIterator[Callable[..., Awaitable[RunningGateway]]]:
    """Start gateways for SERVICE (settings overridable); all closed after the test."""
    stack = contextlib.AsyncExitStack()

    async def start(**changes: Any) -> RunningGateway:
        settings = replace(
            GatewaySettings(service=SERVICE, registry_url=registry.url, registry_token=TOKEN),
            **changes,
        )
        gateway = await stack.enter_async_context(Gateway(settings))
        server = await stack.enter_async_context(gateway.server())
        return RunningGateway(gateway, server)

    async with stack:
        yield start


@pytest.fixture
async def backends() -> AsyncIterator[Callable[..., Awaitable[OpenAIBackend]]]:
    """Start OpenAI-compatible test backends in this process; all stopped after the test."""
    stack = contextlib.AsyncExitStack()

    async def start(**state: Any) -> OpenAIBackend:
        return await stack.enter_async_context(OpenAIBackend(**state))

    async with stack:
        yield start


async def register(
    api: RegistryClient,
    instance_id: str,
    port: int,
    *,
    model: str | None = None,
    version: str = "1",
    kind: str | None = None,
) -> None:
    """Register a backend checked every 0.2 s on /health and wait until it is available
    (``kind``: the server kind, as fleetwatch's agent registers it)."""
    body: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "version": version,
        "check": {"path": "/health", "interval": 0.2, "timeout": 0.5},
    }
    metadata = {"model": model, "kind": kind}
    if model is not None or kind is not None:
        body["metadata"] = {k: v for k, v in metadata.items() if v is not None}
    await api.register(SERVICE, instance_id, body)

    async def status() -> InstanceStatus | None:
        _, found = await api.instances(SERVICE)
        return next((i.status for i in found if i.instance_id == instance_id), None)

    await poll_until(status, InstanceStatus.AVAILABLE, within=10)


async def routed(gateway: RunningGateway, count: int) -> None:
    """Wait until the gateway's own view has ``count`` routable instances."""

    async def seen() -> int:
        return len(gateway.gateway.discovery.cached(SERVICE))

    await poll_until(seen, count, within=10)
