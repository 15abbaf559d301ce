"""Shared fixtures: real Redis and PostgreSQL servers on loopback, started for the test run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from fleetwatch.health import CheckState, HealthScheduler
from fleetwatch.sandbox import HttpBackend, PostgresServer, RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for tests that only read and write through it."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for tests that only query it."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, free to be stopped and restarted."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, free to be stopped and restarted."""
    with PostgresServer(max_connections=10) as server:
        yield server


@pytest.fixture
async def backend() -> AsyncIterator[HttpBackend]:
    """A real HTTP server on loopback with /health, /status/{code} and /sleep/{s} routes."""
    async with HttpBackend() as server:
        yield server


async def wait_for_state(
    scheduler: HealthScheduler,
    name: str,
    predicate: Callable[[CheckState], bool],
    *,
    within: float,
) -> CheckState:
    """Wait until the named check satisfies ``predicate``; fail the test after ``within``."""
    async with asyncio.timeout(within):
        while True:
            revision = scheduler.revision
            state = scheduler.state(name)
            assert state is not None
            if predicate(state):
                return state
            await scheduler.wait_for_change(revision)


async def poll_until(
    probe: Callable[[], Awaitable[object]], expected: object, *, within: float, every: float = 0.05
) -> None:
    """Poll another process until ``probe()`` returns ``expected``; fail after ``within``."""
    async with asyncio.timeout(within):
        # Another process cannot set one of our events, so polling is the honest way to wait.
        while await probe() != expected:  # noqa: ASYNC110
            await asyncio.sleep(every)
