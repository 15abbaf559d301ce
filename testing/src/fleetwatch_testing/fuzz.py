"""Fuzz targets and the schemathesis runner shared by ``make test`` and ``make bench``.

Both targets are the real apps on real sockets: the registry over an in-memory store, and the
gateway in front of a registered OpenAI-compatible test backend, with a client token so that
schemathesis also checks that the API refuses requests without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetwatch.config._registry import ServeConfig
from fleetwatch.discovery import RegistryClient
from fleetwatch.gateway import Gateway, GatewaySettings
from fleetwatch.lifecycle import AppServer
from fleetwatch.registry._model import InstanceStatus
from fleetwatch.registry._registry import Registry
from fleetwatch.registry.stores._memory import MemoryStore
from fleetwatch.registry_api._app import create_app
from fleetwatch.registry_api._node import RegistryNode
from fleetwatch.security import NetworkPolicy
from fleetwatch.security._auth import Scope, Token, TokenAuth
from fleetwatch_testing.children import spawned
from fleetwatch_testing.openai_backend import OpenAIBackend

FUZZ_TOKEN = "fuzz-token"  # noqa: S105 - a throwaway token for throwaway servers
SEED = 20261127
_SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


async def _any_name_is_loopback(host: str, port: int) -> list[str]:
    """No DNS can be reached here: every generated host name resolves to loopback."""
    del host, port
    return ["127.0.0.1"]


def framework_app(wrapped: Any) -> Any:
    """The FastAPI app inside the ASGI wrappers ``create_app`` puts round it (body limit, hot
    paths), each of which holds the next as ``.app``."""
    while not hasattr(wrapped, "openapi"):
        wrapped = wrapped.app
    return wrapped


def fuzzable_registry_app() -> Any:
    """The registry app with blocking-query parameters left out of its published schema:
    a blocking query waits on purpose, which a fuzzer would read as a hang."""
    registry = Registry(MemoryStore(), policy=NetworkPolicy(resolver=_any_name_is_loopback))
    wrapped = create_app(registry, TokenAuth([Token("fuzz", FUZZ_TOKEN, Scope.ALL)]))
    api = framework_app(wrapped)
    spec = api.openapi()
    for path in spec["paths"].values():
        for operation in path.values():
            operation["parameters"] = [
                p for p in operation.get("parameters", []) if p["name"] not in ("index", "wait")
            ]
    api.openapi_schema = spec
    return wrapped


@contextlib.asynccontextmanager
async def fuzzable_registry() -> AsyncIterator[str]:
    """The registry served on a free port; yields its base URL."""
    async with AppServer(fuzzable_registry_app()) as server:
        yield server.url


@contextlib.asynccontextmanager
async def fuzzable_gateway() -> AsyncIterator[str]:
    """A gateway routing to one available test backend (model ``test-model``); yields its URL."""
    auth = TokenAuth([Token("fuzz", FUZZ_TOKEN, Scope.ALL)])
    node = RegistryNode(ServeConfig(), store_url="memory", auth=auth)
    async with contextlib.AsyncExitStack() as stack:
        registry = await stack.enter_async_context(AppServer(node.app()))
        backend = await stack.enter_async_context(OpenAIBackend())
        api = await stack.enter_async_context(RegistryClient(registry.url, token=FUZZ_TOKEN))
        await api.register(
            "llm",
            "backend",
            {"host": "127.0.0.1", "port": backend.port, "check": {"interval": 0.2}},
        )
        settings = GatewaySettings(
            service="llm",
            registry_url=registry.url,
            registry_token=FUZZ_TOKEN,
            client_tokens=frozenset({FUZZ_TOKEN}),
        )
        gateway = await stack.enter_async_context(Gateway(settings))
        server = await stack.enter_async_context(gateway.server())
        async with asyncio.timeout(15):
            while not gateway.discovery.cached("llm"):  # noqa: ASYNC110 - another component
                await asyncio.sleep(0.05)
        _, instances = await api.instances("llm")
        if [i.status for i in instances] != [InstanceStatus.AVAILABLE]:
            raise RuntimeError(f"the fuzz backend is not available: {instances}")
        yield server.url


@dataclass(frozen=True, slots=True)
class FuzzReport:
    """What one schemathesis run found."""

    returncode: int
    generated: int
    output: str

    @property
    def passed(self) -> bool:
        return self.returncode == 0


async def run_schemathesis(
    base_url: str,
    *,
    examples: int,
    exclude_paths: tuple[str, ...] = (),
    exclude_checks: tuple[str, ...] = (),
    timeout: float = 600,
) -> FuzzReport:
    """schemathesis with every check against ``base_url``/openapi.json, seeded."""
    args = [
        "run", f"{base_url}/openapi.json",
        "--header", f"Authorization: Bearer {FUZZ_TOKEN}",
        "--checks", "all", "--max-examples", str(examples),
        "--request-timeout", "5", "--seed", str(SEED), "--no-color",
    ]  # fmt: skip
    if exclude_checks:
        args += ["--exclude-checks", ",".join(exclude_checks)]
    for path in exclude_paths:
        args += ["--exclude-path", path]
    async with (
        spawned(
            str(_SCHEMATHESIS),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        ) as process,
        asyncio.timeout(timeout),
    ):
        out, _ = await process.communicate()
    text = out.decode(errors="replace")
    generated = re.search(r"(\d+) generated", text)
    return FuzzReport(process.returncode or 0, int(generated.group(1)) if generated else 0, text)
