"""The redis check against real redis-server processes the harness starts."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from fleetwatch.health import (
    CheckResult,
    CheckSettings,
    HealthScheduler,
    HealthStatus,
    run_check,
)
from fleetwatch.health.checks import RedisCheck
from fleetwatch_testing import RedisServer
from tests._support.waiting import wait_for_state


async def _check_once(url: str, **options: float) -> CheckResult:
    check = RedisCheck(url, **options)
    try:
        return await run_check(check, CheckSettings("cache"))
    finally:
        await check.aclose()


async def test_healthy_server_reports_role_memory_and_clients(redis_server: RedisServer) -> None:
    """A live primary passes PING and the write/read/delete round trip, leaving no key behind."""
    result = await _check_once(redis_server.url)
    assert result.status is HealthStatus.HEALTHY, result.output
    assert result.metadata["role"] == "master"
    assert result.metadata["write_test"] == "done"
    assert result.metadata["memory_ratio"] == "n/a (no maxmemory)"
    assert result.metadata["connected_clients"] >= 1
    async with aioredis.Redis.from_url(redis_server.url) as client:
        assert [k async for k in client.scan_iter("fleetwatch:health:*")] == []


async def test_memory_pressure_is_degraded(own_redis: RedisServer) -> None:
    """used_memory over maxmemory above the configured ratio is degraded and reports the ratio."""
    async with aioredis.Redis.from_url(own_redis.url) as client:
        used = int((await client.info("memory"))["used_memory"])
        await client.config_set("maxmemory", str(int(used * 1.5)))
    result = await _check_once(own_redis.url, memory_ratio=0.5)
    assert result.status is HealthStatus.DEGRADED
    assert "memory high" in result.output
    assert isinstance(result.metadata["memory_ratio"], float)
    assert 0.5 < result.metadata["memory_ratio"] < 1.0


async def test_full_server_refusing_writes_is_degraded(own_redis: RedisServer) -> None:
    """At maxmemory with noeviction, refused writes are reported as degraded, not a crash."""
    async with aioredis.Redis.from_url(own_redis.url) as client:
        await client.config_set("maxmemory", "1000")
    result = await _check_once(own_redis.url)
    assert result.status is HealthStatus.DEGRADED
    assert "writes refused: maxmemory reached (OOM)" in result.output


async def test_replica_skips_the_write_test(redis_server: RedisServer) -> None:
    """On a read-only replica the write test is skipped, not failed."""
    args = ["--replicaof", "127.0.0.1", str(redis_server.port)]
    with RedisServer(extra_args=args) as replica:
        result = await _check_once(replica.url)
    assert result.status is HealthStatus.HEALTHY, result.output
    assert result.metadata["role"] == "slave"
    assert result.metadata["write_test"] == "skipped on replica"


async def test_stop_and_restart_mid_test(own_redis: RedisServer) -> None:
    """Healthy; server stopped -> unhealthy within the timeout; restarted -> healthy after rise."""
    settings = CheckSettings("cache", interval=0.2, timeout=1.0, rise=2, fall=1)
    async with HealthScheduler([(RedisCheck(own_redis.url, timeout=1.0), settings)]) as scheduler:
        await wait_for_state(scheduler, "cache", lambda s: s.status.passing, within=5)

        await asyncio.to_thread(own_redis.stop)
        stopped = time.monotonic()
        down = await wait_for_state(
            scheduler, "cache", lambda s: s.status is HealthStatus.UNHEALTHY, within=5
        )
        assert time.monotonic() - stopped < settings.timeout
        assert down.result is not None
        assert down.result.duration_s < settings.timeout

        await asyncio.to_thread(own_redis.start)
        first_ok = await wait_for_state(
            scheduler,
            "cache",
            lambda s: s.result is not None and s.result.status.passing,
            within=5,
        )
        assert first_ok.status is HealthStatus.UNHEALTHY
        assert first_ok.pending == "recovering 1/2"
        healthy = await wait_for_state(scheduler, "cache", lambda s: s.status.passing, within=5)
        assert healthy.executions == first_ok.executions + 1


async def test_frozen_server_fails_within_the_timeout(own_redis: RedisServer) -> None:
    """A hung (SIGSTOPped) server fails by timeout, and the check does not overrun it."""
    own_redis.pause()
    try:
        started = time.monotonic()
        result = await _check_once(own_redis.url, timeout=0.5)
        elapsed = time.monotonic() - started
    finally:
        own_redis.resume()
    assert result.status is HealthStatus.UNHEALTHY
    assert result.output.startswith(("TimeoutError", "ConnectionError"))
    assert elapsed < 1.0
