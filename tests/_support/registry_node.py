"""A registry node for tests: in this process (:class:`RunningRegistry`) or as its own
``fleetwatch serve`` process (:func:`serve_process`), both accepting :data:`TOKEN`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator

import httpx

from fleetwatch.config._registry import ServeConfig
from fleetwatch.lifecycle import AppServer
from fleetwatch.registry_api._node import RegistryNode
from fleetwatch.security._auth import Scope, Token, TokenAuth
from fleetwatch_testing import free_port
from tests._support.waiting import poll_until

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
