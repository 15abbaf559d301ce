"""Two `fleetwatch serve` processes on one real Redis: they split the monitoring, and one
takes over when the other dies."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from fleetwatch.discovery import RegistryClient
from fleetwatch_testing import HttpBackend, RedisServer, free_port
from tests._support.registry_node import TOKEN, serve_process

# Two registry processes must join, sync and split the checks within seconds: on a machine
# shared with the parallel phase, the second node missed the window once (one node checked
# all 8 backends for 24 s). make test runs it in its one-at-a-time phase.
pytestmark = pytest.mark.serial


async def _counts(backends: list[HttpBackend], *, reset: bool = False) -> list[dict[str, int]]:
    async with httpx.AsyncClient() as client:
        suffix = "?reset=1" if reset else ""
        return [(await client.get(f"{b.url}/count{suffix}")).json()["by_node"] for b in backends]


async def _settled_split(
    backends: list[HttpBackend], *, within: float = 20.0
) -> list[dict[str, int]]:
    """Who checked each backend over a 2.5 s window, once both nodes have joined and synced
    (4 s on an idle machine; longer on a loaded one): the last window seen."""
    await asyncio.sleep(4.0)
    deadline = asyncio.get_running_loop().time() + within
    while True:
        await _counts(backends, reset=True)
        await asyncio.sleep(2.5)
        split = await _counts(backends)
        if len({node for counts in split for node in counts}) == 2:
            return split
        if asyncio.get_running_loop().time() > deadline:
            return split


async def test_two_nodes_split_the_fleet_and_take_over(own_redis: RedisServer) -> None:
    """Each instance is checked by exactly one node; kill one and the other checks them all."""
    async with contextlib.AsyncExitStack() as stack:
        backends = [await stack.enter_async_context(HttpBackend()) for _ in range(8)]
        first = await stack.enter_async_context(serve_process(free_port(), store=own_redis.url))
        second_port = free_port()
        await stack.enter_async_context(serve_process(second_port, store=own_redis.url))
        api = await stack.enter_async_context(
            RegistryClient(f"http://127.0.0.1:{second_port}", token=TOKEN)
        )
        for n, backend in enumerate(backends):
            await api.register("llm", f"i{n}", {"host": "127.0.0.1", "port": backend.port})
        split = await _settled_split(backends)
        nodes = {node for counts in split for node in counts}
        assert len(nodes) == 2, split
        assert all(len(counts) == 1 for counts in split), split  # one checker per instance

        first.kill()
        await first.wait()
        await asyncio.sleep(5.0)  # its heartbeat lapses (3 s) and the survivor resyncs
        await _counts(backends, reset=True)
        await asyncio.sleep(2.5)
        after = await _counts(backends)
        survivors = {node for counts in after for node in counts}
        assert len(survivors) == 1, after
        assert all(counts for counts in after), after  # every instance is checked again
        _, instances = await api.instances("llm")
        assert {i.status.value for i in instances} == {"available"}
