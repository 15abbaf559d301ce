"""The postgres checks against real PostgreSQL servers the harness starts."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from fleetwatch.health import CheckSettings, HealthScheduler, HealthStatus, run_check
from fleetwatch.health.checks import PostgresCheck, PostgresPoolCheck
from fleetwatch_testing import PostgresServer
from tests._support.waiting import wait_for_state


async def test_dsn_check_reports_connections(postgres_server: PostgresServer) -> None:
    """SELECT 1 passes and the result reports connections in use against max_connections."""
    result = await run_check(PostgresCheck(postgres_server.dsn), CheckSettings("db"))
    assert result.status is HealthStatus.HEALTHY, result.output
    assert result.metadata["max_connections"] == postgres_server.max_connections
    assert result.metadata["connections_in_use"] >= 1


async def test_configured_query_and_bad_query(postgres_server: PostgresServer) -> None:
    """A configured query runs; one that fails makes the check unhealthy naming the error."""
    good = PostgresCheck(postgres_server.dsn, query="SELECT count(*) FROM pg_class")
    assert (await run_check(good, CheckSettings("db"))).status is HealthStatus.HEALTHY
    bad = PostgresCheck(postgres_server.dsn, query="SELECT * FROM no_such_table")
    result = await run_check(bad, CheckSettings("db"))
    assert result.status is HealthStatus.UNHEALTHY
    assert result.output.startswith("UndefinedTableError")


async def test_near_max_connections_is_degraded(own_postgres: PostgresServer) -> None:
    """Near the limit ordinary clients hit (max_connections less reserved slots): degraded."""
    held = [await asyncpg.connect(own_postgres.dsn) for _ in range(6)]
    try:
        result = await run_check(PostgresCheck(own_postgres.dsn), CheckSettings("db"))
    finally:
        await asyncio.gather(*(conn.close() for conn in held))
    assert result.status is HealthStatus.DEGRADED
    assert result.output.startswith(
        "PostgreSQL near the connection limit: 7 in use, ordinary clients are refused at 7 "
        "(10 max_connections, 3 reserved)"
    )
    assert result.metadata["reserved_connections"] == 3


async def test_pool_check_reports_stats_and_exhaustion(postgres_server: PostgresServer) -> None:
    """On the app's own pool: healthy with size/idle/min/max; no idle at max size is degraded."""
    async with asyncpg.create_pool(postgres_server.dsn, min_size=1, max_size=2) as pool:
        check = PostgresPoolCheck(pool)
        result = await run_check(check, CheckSettings("pool"))
        assert result.status is HealthStatus.HEALTHY, result.output
        assert set(result.metadata) == {"size", "idle", "min_size", "max_size"}
        assert result.metadata["max_size"] == 2
        first, second = await pool.acquire(), await pool.acquire()
        started = time.perf_counter()
        exhausted = await run_check(check, CheckSettings("pool"))
        assert time.perf_counter() - started < 0.5  # reported at once, not after a timeout
        await pool.release(first)
        await pool.release(second)
        recovered = await run_check(check, CheckSettings("pool"))
    assert exhausted.status is HealthStatus.DEGRADED
    assert exhausted.output == "pool exhausted: 2/2 connections in use"
    assert recovered.status is HealthStatus.HEALTHY


async def test_stop_and_restart_mid_test(own_postgres: PostgresServer) -> None:
    """Healthy; server stopped -> unhealthy within the timeout; restarted -> healthy after rise."""
    settings = CheckSettings("db", interval=0.2, timeout=2.0, rise=2, fall=1)
    check = PostgresCheck(own_postgres.dsn, timeout=2.0)
    async with HealthScheduler([(check, settings)]) as scheduler:
        await wait_for_state(scheduler, "db", lambda s: s.status.passing, within=5)

        await asyncio.to_thread(own_postgres.stop)
        stopped = time.monotonic()
        await wait_for_state(
            scheduler, "db", lambda s: s.status is HealthStatus.UNHEALTHY, within=5
        )
        assert time.monotonic() - stopped < settings.timeout

        await asyncio.to_thread(own_postgres.start)
        first_ok = await wait_for_state(
            scheduler, "db", lambda s: s.result is not None and s.result.status.passing, within=10
        )
        assert first_ok.status is HealthStatus.UNHEALTHY
        healthy = await wait_for_state(scheduler, "db", lambda s: s.status.passing, within=5)
        assert healthy.executions == first_ok.executions + 1


async def test_frozen_server_fails_within_the_timeout(own_postgres: PostgresServer) -> None:
    """A hung (SIGSTOPped) server fails by timeout, and the check does not overrun it."""
    own_postgres.pause()
    try:
        started = time.monotonic()
        result = await run_check(
            PostgresCheck(own_postgres.dsn, timeout=1.0), CheckSettings("db", timeout=1.0)
        )
        elapsed = time.monotonic() - started
    finally:
        own_postgres.resume()
    assert result.status is HealthStatus.UNHEALTHY
    assert result.output.startswith("TimeoutError")
    assert elapsed < 1.5
