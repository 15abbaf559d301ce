"""``redis`` check: PING, a write/read/delete round trip, memory pressure and latency."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from fleetwatch._extras import require
from fleetwatch.health._result import Observation
from fleetwatch.health.checks._latency import timed_observation

if TYPE_CHECKING:
    import redis.asyncio as aioredis

#: Defaults: slower than 100 ms, or memory above 90% of maxmemory, is degraded.
DEFAULT_SLOW_AFTER = 0.1
DEFAULT_MEMORY_RATIO = 0.9


class RedisCheck:
    """Check a Redis server: reachable, writable, its memory and its latency.

    PING, then SET/GET/DEL of a unique key with a short expiry (a crash mid-check leaves nothing
    behind for long); a read-back mismatch is degraded. On a replica (``role:slave``) the write
    test is skipped: replicas are read-only, which is not a fault. ``used_memory`` over
    ``maxmemory`` above ``memory_ratio`` is degraded; with ``maxmemory`` 0 (no limit) the ratio is
    reported as not applicable. The client is created once and reused; it does not retry, so a
    dead server is reported by this execution, not three executions later.
    """

    component_type = "datastore"
    measurement = "responseTime"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        password: str | None = None,
        slow_after: float | None = DEFAULT_SLOW_AFTER,
        memory_ratio: float = DEFAULT_MEMORY_RATIO,
    ) -> None:
        # redis-py is the `redis` extra: configuring this check without it names the extra.
        require("redis", extra="redis", needed_for="the redis check")
        from redis.asyncio import Redis  # noqa: PLC0415
        from redis.asyncio.retry import Retry  # noqa: PLC0415
        from redis.backoff import NoBackoff  # noqa: PLC0415

        self._client: aioredis.Redis = Redis.from_url(
            url,
            password=password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
            max_connections=2,
        )
        self._slow_after = slow_after
        self._memory_ratio = memory_ratio

    async def check(self) -> Observation:
        started = time.perf_counter()
        await self._client.ping()
        replication: dict[str, Any] = await self._client.info("replication")
        role = str(replication.get("role", "master"))
        problems: list[str] = []
        if role == "master":
            problems.extend(await self._write_read_delete())
        elapsed = time.perf_counter() - started
        info: dict[str, Any] = await self._client.info("memory")
        clients: dict[str, Any] = await self._client.info("clients")
        used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
        ratio = used / limit if limit else None
        if ratio is not None and ratio > self._memory_ratio:
            problems.append(f"memory high: {ratio:.1%} of maxmemory")
        metadata = {
            "role": role,
            "write_test": "done" if role == "master" else "skipped on replica",
            "used_memory_bytes": used,
            "maxmemory_bytes": limit,
            "memory_ratio": round(ratio, 4) if ratio is not None else "n/a (no maxmemory)",
            "connected_clients": int(clients.get("connected_clients", 0)),
        }
        return timed_observation("Redis", elapsed, self._slow_after, metadata, problems=problems)

    async def _write_read_delete(self) -> list[str]:
        from redis.exceptions import OutOfMemoryError  # noqa: PLC0415 - the `redis` extra

        key = f"fleetwatch:health:{uuid.uuid4().hex}"
        try:
            await self._client.set(key, "ok", px=10_000)
        except OutOfMemoryError:
            # Full under a noeviction policy: reads still work, writes are refused.
            return ["writes refused: maxmemory reached (OOM)"]
        value = await self._client.get(key)
        await self._client.delete(key)
        return [] if value == "ok" else [f"write/read mismatch (read {value!r})"]

    async def aclose(self) -> None:
        await self._client.aclose()
