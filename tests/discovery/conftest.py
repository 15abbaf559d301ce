"""A real registry node (API, monitor, in-memory store) on loopback, restartable on its port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fleetwatch.config.registry import ServeConfig
from fleetwatch.discovery import RegistryClient
from fleetwatch.lifecycle import AppServer
from fleetwatch.registry.registry import Scope
from fleetwatch.sandbox import free_port
from fleetwatch.server.auth import Token, TokenAuth
from fleetwatch.server.node import RegistryNode

TOKEN = "discovery-test-token"
OPS_TOKEN = "discovery-ops-token"


class RunningRegistry:
    """A registry node served on a fixed port; ``stop()``/``start()`` simulate a restart."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.node: RegistryNode | None = None
        self._server: AppServer | None = None

    async def start(self) -> None:
        """A fresh node (the in-memory store starts empty, as after a real restart)."""
        auth = TokenAuth([Token("tests", TOKEN, Scope.ALL), Token("ops", OPS_TOKEN, Scope.ALL)])
        self.node = RegistryNode(ServeConfig(), store_url="memory", auth=auth)
        self._server = AppServer(self.node.app(), port=self.port)
        await self._server.start()

    async def stop(self) -> None:
        """Stop serving (clients see connection refused)."""
        if self._server is not None:
            await self._server.aclose()
            self._server = None


@pytest.fixture
async def registry() -> AsyncIterator[RunningRegistry]:
    """A running registry node."""
    running = RunningRegistry()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def api(registry: RunningRegistry) -> AsyncIterator[RegistryClient]:
    """An API client with an all-scopes token."""
    async with RegistryClient(registry.url, token=TOKEN) as client:
        yield client
