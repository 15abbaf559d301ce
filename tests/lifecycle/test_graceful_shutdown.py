"""Graceful shutdown of a Python service under ``serve_llm_app``: no request dropped."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx

from fleetwatch.discovery import RegistryClient
from fleetwatch.lifecycle import InFlight, LlmService, ServiceOptions
from fleetwatch.registry._model import InstanceStatus
from fleetwatch_testing import HttpBackend, free_port, spawned
from tests._support.registry_node import TOKEN, RunningRegistry
from tests._support.waiting import poll_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llm_api.py"


async def _status(api: RegistryClient, iid: str) -> InstanceStatus | None:
    _, found = await api.instances("llm-api")
    return next((i.status for i in found if i.instance_id == iid), None)


async def test_a_request_100ms_after_sigterm_succeeds_and_in_flight_ones_finish(
    registry: RunningRegistry, api: RegistryClient
) -> None:
    """SIGTERM: draining at once, still accepting (a request 100 ms later: 200), the streamed
    request in flight finishes to its last byte, then deregistered and exit 0."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with spawned(
        sys.executable, str(EXAMPLE), "--port", str(port), "--registry", registry.url,
        "--instance-id", "api-1", "--propagation-delay", "1.0",
        env={**os.environ, "FLEETWATCH_TOKEN": TOKEN},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    ) as service:  # fmt: skip
        await poll_until(lambda: _status(api, "api-1"), InstanceStatus.AVAILABLE, within=20)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            long = asyncio.create_task(client.get("/slow", params={"seconds": 2.0}))
            await asyncio.sleep(0.3)  # the long request is in flight
            service.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.1)
            late = await client.post("/v1/chat/completions", json={"messages": [], "max_tokens": 2})
            ready = await client.get("/readyz")
            await poll_until(lambda: _status(api, "api-1"), InstanceStatus.DRAINING, within=2)
            finished = await long
        async with asyncio.timeout(20):
            output, _ = await service.communicate()
    assert late.status_code == 200
    assert ready.status_code == 503  # readiness failed at once
    assert finished.status_code == 200
    assert finished.text.splitlines()[-1] == "part 4/4"
    assert service.returncode == 0
    assert await _status(api, "api-1") is None
    assert b"cancelled=0" in output
    assert b"deregistered=True" in output


async def _serve(options: ServiceOptions, app: Any) -> tuple[LlmService, asyncio.Task[Any]]:
    service = LlmService(app, options)
    ready = asyncio.Event()
    task = asyncio.create_task(service.run(ready=ready))
    async with asyncio.timeout(10):
        await ready.wait()
    return service, task


async def _sleepy_app(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app whose requests take 30 s."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await asyncio.sleep(30)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"late"})


async def test_requests_past_the_drain_timeout_are_cancelled_and_counted(
    registry: RunningRegistry,
) -> None:
    """A request still running when the drain timeout ends is cancelled, and the report says 1."""
    options = ServiceOptions(
        service="llm-api", registry=registry.url, token=TOKEN, port=0,
        propagation_delay=0.1, drain_timeout=0.5, admin_token="admin-secret",
    )  # fmt: skip
    service, task = await _serve(options, _sleepy_app)
    assert service.server is not None
    url = service.server.url
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        stuck = asyncio.create_task(client.get("/anything"))
        await poll_until(lambda: _in_flight(service.inflight), 1, within=5)
        refused = await client.post("/admin/drain", headers={"authorization": "Bearer nope"})
        accepted = await client.post(
            "/admin/drain", headers={"authorization": "Bearer admin-secret"}
        )
        report = await asyncio.wait_for(task, 10)
        outcome = await asyncio.gather(stuck, return_exceptions=True)
    assert refused.status_code == 401
    assert accepted.status_code == 202
    assert report.reason == "drain requested over HTTP"
    assert report.cancelled == 1
    assert report.deregistered
    assert isinstance(outcome[0], httpx.HTTPError) or outcome[0].status_code >= 500


async def _in_flight(inflight: InFlight) -> int:
    return inflight.in_flight


async def test_metrics_discover_and_a_drain_endpoint_that_is_off_without_a_token(
    registry: RunningRegistry, api: RegistryClient, backend: HttpBackend
) -> None:
    """/metrics: uptime and registered; /discover lists routable instances; no admin token: 403."""
    await api.register("other", "o-1", {"host": "127.0.0.1", "port": backend.port})
    options = ServiceOptions(
        service="llm-api", registry=registry.url, token=TOKEN, port=0, propagation_delay=0
    )
    service, task = await _serve(options, _sleepy_app)
    assert service.server is not None
    async with httpx.AsyncClient(base_url=service.server.url, timeout=10) as client:
        metrics = (await client.get("/metrics")).text
        await poll_until(lambda: _discovered(client), 1, within=10)
        off = await client.post("/admin/drain", headers={"authorization": "Bearer x"})
    service.request_drain("test over")
    await asyncio.wait_for(task, 10)
    assert "fleetwatch_registered 1" in metrics
    assert "fleetwatch_uptime_seconds " in metrics
    assert off.status_code == 403


async def _discovered(client: httpx.AsyncClient) -> int:
    return len((await client.get("/discover/other")).json()["instances"])


async def test_checks_on_other_systems_are_declared_as_dependencies(
    registry: RunningRegistry, api: RegistryClient, backend: HttpBackend
) -> None:
    """A service checking a TCP dependency registers depends_on with that check's name
    (the dashboard draws it as an edge); its own host check is not a dependency."""
    from fleetwatch.health import CheckSettings  # noqa: PLC0415
    from fleetwatch.health.checks import SystemCheck, TcpCheck  # noqa: PLC0415

    options = ServiceOptions(
        service="llm-api", registry=registry.url, token=TOKEN, port=0, propagation_delay=0,
        checks=[
            (TcpCheck("127.0.0.1", backend.port), CheckSettings("cache")),
            (SystemCheck(), CheckSettings("host")),
        ],
    )  # fmt: skip
    service, task = await _serve(options, _sleepy_app)
    _, (instance,) = await api.instances("llm-api")
    service.request_drain("test over")
    await asyncio.wait_for(task, 10)
    assert instance.metadata["depends_on"] == "cache"
