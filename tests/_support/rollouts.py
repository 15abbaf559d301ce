"""Rollouts against a real registry: their settings, a fleet to start from, and traffic
through a gateway that counts every failed request."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from fleetwatch.discovery import RegistryClient
from fleetwatch.registry._model import InstanceStatus
from fleetwatch.rollout import RolloutSettings
from fleetwatch_testing.hand_started import Launched, launch
from tests._support.registry_node import TOKEN, RunningRegistry

SERVICE = "llm"
FAST_SERVER = f"{sys.executable} -m fleetwatch_testing.openai_backend --port {{port}} --tokens 8"


def settings(registry: RunningRegistry, tmp_path: Path, **changes: Any) -> RolloutSettings:
    """A rollout of SERVICE to version 2 of the fast test server, quick timeouts."""
    base = RolloutSettings(
        service=SERVICE,
        launch=FAST_SERVER,
        version="2",
        registry_url=registry.url,
        token=TOKEN,
        kind="openai",
        ready_timeout=30,
        drain_wait=30,
        log_dir=tmp_path / "logs",
        agent_args=("--propagation-delay", "500ms", "--ttl", "5s"),
    )
    return replace(base, **changes)


async def start_fleet(
    api: RegistryClient, plan: RolloutSettings, count: int, reaper: list[int]
) -> list[Launched]:
    """``count`` instances of ``plan``'s version, available."""
    fleet = [launch(plan) for _ in range(count)]
    reaper.extend(one.pid for one in fleet)
    async with asyncio.timeout(60):
        while True:
            _, found = await api.instances(SERVICE)
            up = {i.instance_id for i in found if i.status is InstanceStatus.AVAILABLE}
            if all(one.instance_id in up for one in fleet):
                return fleet
            await asyncio.sleep(0.1)


@dataclass
class Traffic:
    """Clients sending requests through a gateway until stopped; half of them stream."""

    base_url: str
    clients: int = 20
    model: str | None = None
    max_tokens: int = 8
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._client(n % 2 == 0)) for n in range(self.clients)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _client(self, streaming: bool) -> None:
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": "Say something."}],
            "max_tokens": self.max_tokens,
            "stream": streaming,
        }
        if self.model:
            body["model"] = self.model
        async with httpx.AsyncClient(base_url=self.base_url, timeout=60) as client:
            while not self._stop.is_set():
                self.sent += 1
                try:
                    problem = await (
                        self._stream(client, body) if streaming else self._call(client, body)
                    )
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                if problem:
                    self.failures.append(problem)

    @staticmethod
    async def _call(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
        reply = await client.post("/v1/chat/completions", json=body)
        if reply.status_code != 200:
            return f"HTTP {reply.status_code}: {reply.text[:200]}"
        if not reply.json()["choices"][0]["message"]["content"]:
            return "empty reply"
        return ""

    @staticmethod
    async def _stream(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
        async with client.stream("POST", "/v1/chat/completions", json=body) as reply:
            if reply.status_code != 200:
                return f"HTTP {reply.status_code}"
            done = False
            async for line in reply.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: ") and '"error"' in line:
                    return f"error event: {json.loads(line[6:])['error']['message']}"
            return "" if done else "stream ended without [DONE]"
