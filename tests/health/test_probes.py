"""Probe endpoints: health+json bodies, status codes, groups, drain, and probe floods."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fleetwatch.health import (
    CheckSettings,
    Group,
    HealthProbes,
    HealthScheduler,
    HealthStatus,
    Observation,
)
from fleetwatch.lifecycle import AppServer
from fleetwatch_testing.raw_http import RawHttpConnection


class Fixed:
    """A check whose status the test sets."""

    component_type = "datastore"

    def __init__(self, status: HealthStatus = HealthStatus.HEALTHY, delay: float = 0.0) -> None:
        self.status = status
        self.delay = delay
        self.calls = 0

    async def check(self) -> Observation:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return Observation(self.status, f"fixed {self.status.value}")


def _client(probes: HealthProbes) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=probes.asgi_app()), base_url="http://probe"
    )


@pytest.fixture
async def setup() -> AsyncIterator[tuple[HealthScheduler, HealthProbes, dict[str, Fixed]]]:
    """A database (critical, readiness), a cache (readiness) and a watchdog (liveness)."""
    checks = {"db": Fixed(), "cache": Fixed(), "watchdog": Fixed()}
    scheduler = HealthScheduler(
        [
            (checks["db"], CheckSettings("db", critical=True, fall=1, rise=1, interval=3600)),
            (checks["cache"], CheckSettings("cache", fall=1, rise=1, interval=3600)),
            (
                checks["watchdog"],
                CheckSettings(
                    "watchdog", groups=frozenset({Group.LIVENESS}), interval=3600, fall=1
                ),
            ),
        ]
    )
    yield scheduler, HealthProbes(scheduler, service_id="llm-api", version="1.2"), checks
    await scheduler.aclose()


async def _get(probes: HealthProbes, path: str) -> tuple[int, dict[str, Any], httpx.Headers]:
    async with _client(probes) as client:
        response = await client.get(path)
    return response.status_code, response.json(), response.headers


async def test_not_ready_until_every_check_reported(setup: Any) -> None:
    """Before any result, readiness and startup fail (unknown) while liveness passes."""
    _, probes, _ = setup
    code, body, headers = await _get(probes, "/readyz")
    assert (code, body["status"]) == (503, "fail")
    assert body["output"].startswith("waiting for the first result of: db, cache")
    assert headers["content-type"] == "application/health+json"
    assert headers["cache-control"] == "no-store"
    assert (await _get(probes, "/startupz"))[0] == 503
    assert (await _get(probes, "/livez"))[0] == 200


async def test_verbose_body_follows_the_health_json_draft(setup: Any) -> None:
    """?verbose lists checks keyed component:measurement with the draft's fields."""
    scheduler, probes, _ = setup
    await scheduler.run_all()
    code, body, _ = await _get(probes, "/health?verbose")
    assert code == 200
    assert body["status"] == "pass"
    assert (body["serviceId"], body["version"]) == ("llm-api", "1.2")
    assert set(body["checks"]) == {"db:responseTime", "cache:responseTime", "watchdog:responseTime"}
    entry = body["checks"]["db:responseTime"][0]
    assert entry["componentId"] == "db"
    assert entry["componentType"] == "datastore"
    assert entry["status"] == "pass"
    assert entry["observedUnit"] == "ms"
    assert entry["time"].endswith("Z")
    assert entry["critical"] is True
    assert body["summary"]["total"] == 3
    plain = (await _get(probes, "/health"))[1]
    assert "checks" not in plain
    assert "checks" not in (await _get(probes, "/health?verbose=false"))[1]


async def test_degraded_is_warn_with_200_and_critical_failure_is_503(setup: Any) -> None:
    """warn keeps serving (200); a critical check down fails readiness (503)."""
    scheduler, probes, checks = setup
    checks["cache"].status = HealthStatus.DEGRADED
    await scheduler.run_all()
    code, body, _ = await _get(probes, "/readyz")
    assert (code, body["status"]) == (200, "warn")
    checks["db"].status = HealthStatus.UNHEALTHY
    await scheduler.run_all()
    code, body, _ = await _get(probes, "/readyz")
    assert (code, body["status"]) == (503, "fail")
    assert body["output"] == "Critical checks failed: db"


async def test_liveness_ignores_dependencies(setup: Any) -> None:
    """Dependencies down fail readiness but not liveness; a liveness check down fails it."""
    scheduler, probes, checks = setup
    checks["db"].status = HealthStatus.UNHEALTHY
    await scheduler.run_all()
    assert (await _get(probes, "/readyz"))[0] == 503
    assert (await _get(probes, "/livez"))[0] == 200
    checks["watchdog"].status = HealthStatus.UNHEALTHY
    await scheduler.run_all()
    assert (await _get(probes, "/livez"))[0] == 503


async def test_drain_fails_readiness_and_says_so(setup: Any) -> None:
    """While draining, /readyz is 503 'draining', /health notes it, /livez still passes."""
    scheduler, probes, _ = setup
    await scheduler.run_all()
    assert (await _get(probes, "/readyz"))[0] == 200
    probes.start_draining()
    code, body, _ = await _get(probes, "/readyz")
    assert (code, body["output"]) == (503, "draining")
    health = (await _get(probes, "/health"))[1]
    assert any("draining" in note for note in health["notes"])
    assert (await _get(probes, "/livez"))[0] == 200
    probes.stop_draining()
    assert (await _get(probes, "/readyz"))[0] == 200


async def test_pass_omits_output_and_warn_has_it(setup: Any) -> None:
    """As the draft asks, output is left out for pass and given for warn and fail."""
    scheduler, probes, checks = setup
    await scheduler.run_all()
    body = (await _get(probes, "/health?verbose"))[1]
    assert "output" not in body
    assert "output" not in body["checks"]["db:responseTime"][0]
    checks["cache"].status = HealthStatus.DEGRADED
    await scheduler.run_all()
    body = (await _get(probes, "/health?verbose"))[1]
    assert body["status"] == "pass"  # score 5/6 is still healthy overall
    assert body["checks"]["cache:responseTime"][0]["output"] == "fixed degraded"


async def test_startup_without_startup_checks_waits_for_every_first_result() -> None:
    """With no check in the startup group, /startupz passes once every check has reported."""
    only_ready = Fixed()
    settings = CheckSettings("ready-only", groups=frozenset({Group.READINESS}))
    scheduler = HealthScheduler([(only_ready, settings)])
    probes = HealthProbes(scheduler)
    assert (await _get(probes, "/startupz"))[0] == 503
    await scheduler.run_all()
    assert (await _get(probes, "/startupz"))[0] == 200


async def test_startup_latches_once_passed(setup: Any) -> None:
    """After the startup group passes once, /startupz keeps passing."""
    scheduler, probes, checks = setup
    await scheduler.run_all()
    assert (await _get(probes, "/startupz"))[0] == 200
    checks["db"].status = HealthStatus.UNHEALTHY
    await scheduler.run_all()
    assert (await _get(probes, "/readyz"))[0] == 503
    assert (await _get(probes, "/startupz"))[0] == 200


async def test_per_check_endpoint(setup: Any) -> None:
    """/health/<check> answers for one check; an unknown name is 404 listing the known ones."""
    scheduler, probes, checks = setup
    checks["cache"].status = HealthStatus.UNHEALTHY
    await scheduler.run_all()
    code, body, _ = await _get(probes, "/health/cache")
    assert (code, body["status"]) == (503, "fail")
    assert list(body["checks"]) == ["cache:responseTime"]
    code, body, _ = await _get(probes, "/health/nope")
    assert code == 404
    assert body["output"] == "no check named 'nope'; known checks: db, cache, watchdog"


async def test_healthz_alias_and_head(setup: Any) -> None:
    """/healthz is /health, and HEAD works for probes that only look at the status."""
    scheduler, probes, _ = setup
    await scheduler.run_all()
    async with _client(probes) as client:
        assert (await client.get("/healthz")).json() == (await client.get("/health")).json()
        head = await client.head("/readyz")
    assert head.status_code == 200


class Gated(Fixed):
    """A check whose run lasts until the test opens its gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def check(self) -> Observation:
        self.calls += 1
        await self.gate.wait()
        return Observation(self.status, f"fixed {self.status.value}")


async def test_probe_flood_causes_no_extra_check_executions() -> None:
    """1,000 concurrent /health requests run no check beyond the schedule; 503 until all report."""
    slow = Gated()
    checks = [slow, Fixed(), Fixed()]
    scheduler = HealthScheduler(
        (check, CheckSettings(f"c{i}", interval=3600)) for i, check in enumerate(checks)
    )
    probes = HealthProbes(scheduler)

    async def one(port: int, path: str) -> int:
        async with RawHttpConnection("127.0.0.1", port) as connection:
            status, _ = await connection.get(path)
        return status

    async with scheduler, AppServer(probes.asgi_app(), backlog=2048) as server:
        # The first wave lands while the slow check's one scheduled run is still going on
        # (held by its gate: 1,000 connections take longer than any fixed delay would).
        during = await asyncio.gather(*(one(server.port, "/health") for _ in range(1000)))
        slow.gate.set()
        await asyncio.sleep(0.3)
        after = await asyncio.gather(*(one(server.port, "/health?verbose") for _ in range(1000)))
    assert set(during) == {503}  # waiting for the first result of c0: /health fails
    assert set(after) == {200}
    assert [c.calls for c in checks] == [1, 1, 1]
    assert scheduler.executions == 3
