"""Shared fixtures: real Redis and PostgreSQL servers on loopback, started for the test run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from fleetwatch.config._registry import ServeConfig
from fleetwatch.discovery import RegistryClient
from fleetwatch.health import CheckState, HealthScheduler
from fleetwatch.lifecycle import AppServer
from fleetwatch.lifecycle._http_limits import HttpLimits
from fleetwatch.registry_api._node import RegistryNode
from fleetwatch.security._auth import Scope, Token, TokenAuth
from fleetwatch_testing import HttpBackend, PostgresServer, RedisServer, free_port
from fleetwatch_testing.llama import LlamaServer

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


#: Limits tight enough for a test to hit each within seconds.
TIGHT_LIMITS = HttpLimits(
    header_timeout=0.5, read_timeout=1.5, max_header_bytes=4096, max_body_bytes=1000
)


async def read_until_closed(reader: asyncio.StreamReader, within: float) -> tuple[bytes, float]:
    """Everything a server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    async with asyncio.timeout(within):
        data = await reader.read()
    return data, time.monotonic() - started


@dataclass(frozen=True)
class SlowClients:
    """What a server answered three misbehaving clients (see :func:`probe_slow_clients`)."""

    #: Headers dribbled and never finished: the reply, and when the server closed.
    dribbled: bytes
    dribbled_closed_after: float
    #: Headers sent in pieces past the cap.
    oversized_headers: bytes
    #: A body that stops arriving: the reply (nothing), and when the server closed.
    stalled_body: bytes
    stalled_closed_after: float


async def probe_slow_clients(port: int) -> SlowClients:
    """An unfinished header, headers past 4 KiB in pieces, and a body that stops short, each
    on its own connection to ``port`` (limits as in :data:`TIGHT_LIMITS`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: a")
    dribbled, dribbled_after = await read_until_closed(reader, within=5)
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: ")
    with contextlib.suppress(ConnectionError):
        for _ in range(5):
            writer.write(b"z" * 1000)
            await writer.drain()
            await asyncio.sleep(0.05)
    oversized, _ = await read_until_closed(reader, within=5)
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    stalled, stalled_after = await read_until_closed(reader, within=5)
    writer.close()
    return SlowClients(dribbled, dribbled_after, oversized, stalled, stalled_after)


TOKEN = "discovery-test-token"
OPS_TOKEN = "discovery-ops-token"


@contextlib.asynccontextmanager
async def serve_process(
    port: int, *, store: str | None = None, args: tuple[str, ...] = ()
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`fleetwatch serve` (accepting TOKEN) as its own process on ``port``, ready when /readyz
    passes; stopped with SIGTERM (SIGKILL after 15 s) unless the test already ended it."""
    argv = [sys.executable, "-m", "fleetwatch", "serve", "--port", str(port)]
    if store is not None:
        argv += ["--store", store]
    argv += args
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env={**os.environ, "FLEETWATCH_TOKEN": TOKEN},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(timeout=1) as client:

            async def ready() -> int:
                try:
                    return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code
                except httpx.TransportError:
                    return 0

            await poll_until(ready, 200, within=30)
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(15):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


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
