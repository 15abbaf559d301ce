"""A registry API on a real loopback socket, over the in-memory store, with three tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from fleetwatch.lifecycle import AppServer
from fleetwatch.registry._registry import Registry
from fleetwatch.registry.stores import MemoryStore
from fleetwatch.registry_api import create_app
from fleetwatch.security._auth import Scope, Token, TokenAuth
from tests._support.registry_api import Api


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    """Team A and team B may register and read; ops is admin. Reads need a token."""
    registry = Registry(MemoryStore(), tombstone_s=30)
    auth = TokenAuth(
        [
            Token("team-a", "secret-a", frozenset({Scope.REGISTER, Scope.READ})),
            Token("team-b", "secret-b", frozenset({Scope.REGISTER, Scope.READ})),
            Token("ops", "secret-ops", Scope.ALL),
        ]
    )
    async with (
        AppServer(create_app(registry, auth, max_body_bytes=4096)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        yield Api(client, registry, server.url)
