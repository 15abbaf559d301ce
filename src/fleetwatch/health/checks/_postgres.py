"""``postgres`` checks: ``SELECT 1`` from a DSN, or on the application's own asyncpg pool."""

from __future__ import annotations

import time
from typing import Any

from fleetwatch._extras import require
from fleetwatch.health._result import Observation
from fleetwatch.health._status import HealthStatus
from fleetwatch.health.checks._latency import timed_observation

#: A query slower than 1 s is degraded.
DEFAULT_SLOW_AFTER = 1.0
#: Connections at or above this share of what ordinary clients may open is degraded: new
#: clients are about to be refused ("sorry, too many clients already").
DEFAULT_CONNECTIONS_RATIO = 0.9

_CONNECTIONS_SQL = """
SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
       current_setting('max_connections')::int,
       current_setting('superuser_reserved_connections')::int
         + coalesce(current_setting('reserved_connections', true), '0')::int
"""


class PostgresCheck:
    """Connect to ``dsn``, run ``query``, and report server connections against the limit.

    It opens a fresh connection each time on purpose: that is what a new client of the database
    must be able to do, and a long-lived connection would hide ``max_connections`` exhaustion.
    The limit that matters to ordinary clients is ``max_connections`` less the slots reserved for
    superusers (and, from PostgreSQL 16, ``reserved_connections``): they are refused there.
    """

    component_type = "datastore"
    measurement = "responseTime"

    def __init__(
        self,
        dsn: str,
        *,
        timeout: float = 5.0,
        query: str = "SELECT 1",
        password: str | None = None,
        slow_after: float | None = DEFAULT_SLOW_AFTER,
        connections_ratio: float = DEFAULT_CONNECTIONS_RATIO,
    ) -> None:
        # asyncpg is the `postgres` extra: configuring this check without it names the extra.
        self._asyncpg = require("asyncpg", extra="postgres", needed_for="the postgres check")
        self._dsn = dsn
        self._timeout = timeout
        self._query = query
        self._password = password
        self._slow_after = slow_after
        self._connections_ratio = connections_ratio

    async def check(self) -> Observation:
        started = time.perf_counter()
        conn = await self._asyncpg.connect(
            self._dsn, password=self._password, timeout=self._timeout
        )
        try:
            await conn.execute(self._query, timeout=self._timeout)
            elapsed = time.perf_counter() - started
            row = await conn.fetchrow(_CONNECTIONS_SQL, timeout=self._timeout)
        except BaseException:
            # Failed, timed out or cancelled: drop the connection without waiting on a server
            # that may be the very thing that hangs.
            conn.terminate()
            raise
        await conn.close(timeout=self._timeout)
        if row is None:
            raise RuntimeError("the connection-count query returned no row")
        in_use, limit, reserved = int(row[0]), int(row[1]), int(row[2])
        usable = max(1, limit - reserved)
        problems = []
        if in_use >= self._connections_ratio * usable:
            problems.append(
                f"near the connection limit: {in_use} in use, ordinary clients are refused at "
                f"{usable} ({limit} max_connections, {reserved} reserved)"
            )
        metadata = {
            "connections_in_use": in_use,
            "max_connections": limit,
            "reserved_connections": reserved,
        }
        return timed_observation(
            "PostgreSQL", elapsed, self._slow_after, metadata, problems=problems
        )


class PostgresPoolCheck:
    """Run ``query`` on the application's own asyncpg pool and report its size and idle count.

    A pool check that does not cry wolf: the pool is "exhausted" (degraded) when no connection is
    idle and it cannot grow (size == max_size). Then the check reports at once rather than
    queueing behind the application's own work until it times out.
    """

    component_type = "datastore"
    measurement = "responseTime"

    def __init__(
        self,
        pool: Any,
        *,
        timeout: float = 5.0,
        query: str = "SELECT 1",
        slow_after: float | None = DEFAULT_SLOW_AFTER,
    ) -> None:
        self._pool = pool
        self._timeout = timeout
        self._query = query
        self._slow_after = slow_after

    def _stats(self) -> dict[str, int]:
        pool = self._pool
        return {
            "size": int(pool.get_size()),
            "idle": int(pool.get_idle_size()),
            "min_size": int(pool.get_min_size()),
            "max_size": int(pool.get_max_size()),
        }

    async def check(self) -> Observation:
        before = self._stats()
        if before["idle"] == 0 and before["size"] >= before["max_size"]:
            return Observation(
                HealthStatus.DEGRADED,
                f"pool exhausted: {before['size']}/{before['max_size']} connections in use",
                metadata=before,
            )
        started = time.perf_counter()
        async with self._pool.acquire(timeout=self._timeout) as conn:
            await conn.execute(self._query, timeout=self._timeout)
        elapsed = time.perf_counter() - started
        return timed_observation("PostgreSQL pool", elapsed, self._slow_after, self._stats())
