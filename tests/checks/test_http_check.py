"""The http check against a real HTTP server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from fleetwatch.config import parse_config
from fleetwatch.health import CheckSettings, HealthStatus, run_check
from fleetwatch.health.checks import HttpCheck, parse_status_spec
from fleetwatch_testing import HttpBackend, free_port


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A pooled client like the one a process shares between its checks."""
    async with httpx.AsyncClient(trust_env=False) as http:
        yield http


async def _run(check: HttpCheck) -> tuple[HealthStatus, str]:
    result = await run_check(check, CheckSettings("api"))
    return result.status, result.output


async def test_2xx_is_healthy(backend: HttpBackend, client: httpx.AsyncClient) -> None:
    """A 200 answer is healthy and reports the status code and latency."""
    check = HttpCheck(f"{backend.url}/health", client=client)
    result = await run_check(check, CheckSettings("api"))
    assert result.status is HealthStatus.HEALTHY
    assert result.metadata["status_code"] == 200
    assert result.observed_unit == "ms"


async def test_slow_answer_is_degraded(backend: HttpBackend, client: httpx.AsyncClient) -> None:
    """An answer slower than slow_after is degraded and says how slow."""
    check = HttpCheck(f"{backend.url}/sleep/0.3", client=client, slow_after=0.1)
    status, output = await _run(check)
    assert status is HealthStatus.DEGRADED
    assert "slow" in output


async def test_5xx_is_unhealthy(backend: HttpBackend, client: httpx.AsyncClient) -> None:
    """A server error fails the check, naming the code and what was expected."""
    status, output = await _run(HttpCheck(f"{backend.url}/status/500", client=client))
    assert status is HealthStatus.UNHEALTHY
    assert output.startswith("HTTP 500")
    assert "expected 2xx" in output


async def test_429_is_degraded(backend: HttpBackend, client: httpx.AsyncClient) -> None:
    """Too Many Requests is degraded, as Consul treats it: alive but shedding load."""
    status, _ = await _run(HttpCheck(f"{backend.url}/status/429", client=client))
    assert status is HealthStatus.DEGRADED


async def test_expected_statuses_are_configurable(
    backend: HttpBackend, client: httpx.AsyncClient
) -> None:
    """A 404 passes when declared expected; a redirect fails and is not followed."""
    expected = [parse_status_spec("404")]
    check = HttpCheck(f"{backend.url}/status/404", client=client, expected_status=expected)
    assert (await _run(check))[0] is HealthStatus.HEALTHY
    status, output = await _run(HttpCheck(f"{backend.url}/status/301", client=client))
    assert status is HealthStatus.UNHEALTHY
    assert output.startswith("HTTP 301")


async def test_missing_body_substring_fails(
    backend: HttpBackend, client: httpx.AsyncClient
) -> None:
    """body_contains must appear in the body, or the check fails."""
    good = HttpCheck(f"{backend.url}/health", client=client, body_contains="ok")
    bad = HttpCheck(f"{backend.url}/health", client=client, body_contains="ready")
    assert (await _run(good))[0] is HealthStatus.HEALTHY
    status, output = await _run(bad)
    assert status is HealthStatus.UNHEALTHY
    assert "'ready'" in output


async def test_refused_connection_is_unhealthy(client: httpx.AsyncClient) -> None:
    """Nothing listening: unhealthy, naming the error type."""
    status, output = await _run(HttpCheck(f"http://127.0.0.1:{free_port()}/", client=client))
    assert status is HealthStatus.UNHEALTHY
    assert output.startswith("ConnectError")


async def test_hanging_server_hits_the_timeout(
    backend: HttpBackend, client: httpx.AsyncClient
) -> None:
    """A server that does not answer in time is unhealthy within the check's timeout."""
    check = HttpCheck(f"{backend.url}/sleep/3", client=client, timeout=0.2)
    result = await run_check(check, CheckSettings("api", timeout=0.2))
    assert result.status is HealthStatus.UNHEALTHY
    assert result.duration_s < 1.0


async def test_connection_is_reused(backend: HttpBackend, client: httpx.AsyncClient) -> None:
    """Successive checks share one pooled connection (the seed opened a session per check)."""
    check = HttpCheck(f"{backend.url}/peer", client=client)
    for _ in range(3):
        assert (await run_check(check, CheckSettings("api"))).status is HealthStatus.HEALTHY
    async with httpx.AsyncClient() as other:
        ports = (await other.get(f"{backend.url}/peers")).json()["ports"]
    assert len(ports) == 3
    assert len(set(ports)) == 1


async def test_secret_headers_come_from_the_environment(
    backend: HttpBackend, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """headers_from_env sends the variable's value; the file only names the variable."""
    monkeypatch.setenv("API_AUTH", "Bearer s3cret")
    config = parse_config(
        {
            "checks": [
                {
                    "name": "api",
                    "type": "http",
                    "url": f"{backend.url}/headers",
                    "headers": {"X-Probe": "fleetwatch"},
                    "headers_from_env": {"Authorization": "API_AUTH"},
                }
            ]
        }
    )
    [(check, _)] = config.build(client)
    assert isinstance(check, HttpCheck)
    result = await run_check(check, CheckSettings("api"))
    assert result.status is HealthStatus.HEALTHY
    seen = (await client.get(f"{backend.url}/last-headers")).json()
    assert seen["authorization"] == "Bearer s3cret"
    assert seen["x-probe"] == "fleetwatch"
