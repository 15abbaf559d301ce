"""Shared fixtures: real Redis and PostgreSQL servers on loopback, started for the test run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from fleetwatch.discovery import RegistryClient
from fleetwatch_testing import HttpBackend, PostgresServer, RedisServer
from fleetwatch_testing.llama import LlamaServer
from tests._support.registry_node import TOKEN, RunningRegistry

#: Fixtures that test folders share, each in the helper module of its part.
pytest_plugins = ["tests._support.agents", "tests._support.gateways"]

#: Tests that start llama.cpp servers of their own (to kill, pause or load them) need the
#: machine to themselves: they run in make test's second, one-at-a-time phase
#: (scripts/run-pytest.sh). Whole modules that do the same mark themselves ``serial``.
SERIAL = pytest.mark.serial
SERIAL_FIXTURES = frozenset({"llama_servers", "own_llama"})
#: ``make test-fast`` (the edit loop) leaves out tests marked ``slow``: every serial one, every
#: one with a llama.cpp server, and these folders and modules, which build venvs, drive a
#: browser, fuzz, play chaos or wait out real timeouts.
SLOW_FIXTURES = SERIAL_FIXTURES | {"llama_server"}
SLOW_PATHS = (
    "tests/chaos/",
    "tests/fuzz/",
    "tests/packaging/test_wheel.py",
    "tests/dashboard/",
    "tests/llm/",
    "tests/rollout/",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a fixture of SERIAL_FIXTURES ``serial``, and the slow ones
    ``slow``."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if SERIAL_FIXTURES & fixtures:
            item.add_marker(SERIAL)
        where = item.nodeid.replace("\\", "/")
        if (
            SLOW_FIXTURES & fixtures
            or item.get_closest_marker("serial") is not None
            or where.startswith(SLOW_PATHS)
        ):
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """One llama-server for the session, for tests that leave it as they found it."""
    with LlamaServer() as server:
        yield server


@pytest.fixture
def llama_servers() -> Iterator[Callable[..., list[LlamaServer]]]:
    """Start N fresh llama-servers on free ports (ready); all stopped after the test."""
    started: list[LlamaServer] = []

    def start(count: int, *, wait_ready: bool = True) -> list[LlamaServer]:
        servers = [LlamaServer() for _ in range(count)]
        started.extend(servers)
        for server in servers:
            server.start(wait_ready=False)
        if wait_ready:
            for server in servers:
                server.start_wait()
        return servers

    try:
        yield start  # type: ignore[misc]
    finally:
        for server in started:
            server.close()


@pytest.fixture
def own_llama(llama_servers: Callable[..., list[LlamaServer]]) -> LlamaServer:
    """A llama-server of this test's own, to pause or kill."""
    return llama_servers(1)[0]
