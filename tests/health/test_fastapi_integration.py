"""Probe routes inside a user's FastAPI app, as the README shows, over a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from fleetwatch.health import (
    CheckSettings,
    Group,
    HealthProbes,
    HealthScheduler,
    HealthStatus,
    Observation,
)
from fleetwatch.lifecycle import AppServer


class QueueDepth:
    """The README's custom check."""

    component_type = "queue"
    measurement = "depth"

    def __init__(self) -> None:
        self.depth = 3

    async def check(self) -> Observation:
        status = HealthStatus.DEGRADED if self.depth > 1000 else HealthStatus.HEALTHY
        return Observation(status, f"{self.depth} jobs waiting", self.depth, "jobs")


async def test_custom_check_in_a_fastapi_app() -> None:
    """A FastAPI lifespan runs the scheduler (stopping it at shutdown); probes beside app routes."""
    queue = QueueDepth()
    scheduler = HealthScheduler()
    scheduler.add(queue, CheckSettings("jobs", groups=frozenset({Group.READINESS}), interval=0.05))
    probes = HealthProbes(scheduler, service_id="llm-api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with scheduler:
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/v1/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    app.router.routes.extend(probes.routes())
    async with AppServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        await scheduler.wait_for_change(0)
        ready = await client.get("/readyz?verbose")
        assert ready.status_code == 200
        assert ready.json()["checks"]["jobs:depth"][0]["observedValue"] == 3
        assert (await client.get("/v1/hello")).json() == {"hello": "world"}
        queue.depth = 5000
        await scheduler.wait_for_change()
        warn = await client.get("/readyz")
        assert (warn.status_code, warn.json()["status"]) == (200, "warn")
        probes.start_draining()
        assert (await client.get("/readyz")).status_code == 503
        assert any(t.get_name() == "fleetwatch.health.check.jobs" for t in asyncio.all_tasks())
    # The app's lifespan shutdown left the scheduler's context: no check loop runs on.
    leftover = [
        t for t in asyncio.all_tasks() if t.get_name().startswith("fleetwatch.health.check")
    ]
    assert leftover == []
