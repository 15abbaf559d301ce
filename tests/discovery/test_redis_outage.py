"""The registry's Redis dies: clients keep routing on what they knew, and all recover after."""

from __future__ import annotations

import asyncio
import contextlib

from fleetwatch.config._registry import ServeConfig
from fleetwatch.discovery import DiscoveryClient, registration
from fleetwatch.lifecycle import AppServer
from fleetwatch.registry_api._node import RegistryNode
from fleetwatch.security._auth import Scope, Token, TokenAuth
from fleetwatch_testing import HttpBackend, RedisServer

TOKEN = "redis-outage-token"


async def test_redis_down_then_back(own_redis: RedisServer) -> None:
    """Redis stops (without persistence): discovery serves last-known-good, flagged stale;
    Redis returns empty: the instances register again through their heartbeats, 0 lost."""
    auth = TokenAuth([Token("tests", TOKEN, Scope.ALL)])
    node = RegistryNode(ServeConfig(), store_url=own_redis.url, auth=auth)
    async with contextlib.AsyncExitStack() as stack:
        backends = [await stack.enter_async_context(HttpBackend()) for _ in range(3)]
        server = await stack.enter_async_context(AppServer(node.app()))
        for n, backend in enumerate(backends):
            await stack.enter_async_context(
                registration(
                    "llm", f"i{n}", host="127.0.0.1", port=backend.port, registry_url=server.url,
                    token=TOKEN, ttl=3, heartbeat_every=0.2,
                    check={"interval": 0.2, "timeout": 0.2},
                )
            )  # fmt: skip
        client = await stack.enter_async_context(DiscoveryClient(server.url, token=TOKEN, wait=1.0))

        async def routable() -> set[str]:
            return {i.instance_id for i in await client.instances("llm")}

        async with asyncio.timeout(10):
            while await routable() != {"i0", "i1", "i2"}:  # noqa: ASYNC110 - the monitor works
                await asyncio.sleep(0.05)

        await asyncio.to_thread(own_redis.stop)
        async with asyncio.timeout(10):
            while not client.is_stale("llm"):  # noqa: ASYNC110 - the client notices on its own
                await asyncio.sleep(0.05)
        assert await routable() == {"i0", "i1", "i2"}  # last-known-good keeps routing

        await asyncio.to_thread(own_redis.start)  # back, and empty
        async with asyncio.timeout(20):
            while client.is_stale("llm") or await routable() != {"i0", "i1", "i2"}:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
