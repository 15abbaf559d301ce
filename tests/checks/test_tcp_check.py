"""The tcp check against real sockets."""

from __future__ import annotations

from fleetwatch.health import CheckSettings, HealthStatus, run_check
from fleetwatch.health.checks import TcpCheck
from fleetwatch_testing import HttpBackend, free_port


async def test_open_port_is_healthy(backend: HttpBackend) -> None:
    """A listening port is healthy and reports its connect time."""
    result = await run_check(TcpCheck("127.0.0.1", backend.port), CheckSettings("port"))
    assert result.status is HealthStatus.HEALTHY
    assert result.metadata["target"] == f"127.0.0.1:{backend.port}"
    assert result.observed_unit == "ms"


async def test_closed_port_is_unhealthy() -> None:
    """Nothing listening is unhealthy and names the refusal."""
    result = await run_check(TcpCheck("127.0.0.1", free_port()), CheckSettings("port"))
    assert result.status is HealthStatus.UNHEALTHY
    assert result.output.startswith("ConnectionRefusedError")


async def test_slow_connect_threshold(backend: HttpBackend) -> None:
    """A connect slower than slow_after is degraded (a zero threshold makes any connect slow)."""
    check = TcpCheck("127.0.0.1", backend.port, slow_after=1e-9)
    result = await run_check(check, CheckSettings("port"))
    assert result.status is HealthStatus.DEGRADED
