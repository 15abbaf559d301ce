"""Connections to Redis: a plain URL, or a primary found through Redis Sentinel.

``redis+sentinel://HOST:PORT[,HOST:PORT...]/PRIMARY_NAME[/DB]`` asks the sentinels which server
is the primary and follows a failover: after one, new connections go to the promoted replica.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

from fleetwatch._cancellation import keep_cancellation
from fleetwatch._extras import missing_extra
from fleetwatch.errors import ConfigError, RegistryUnavailable

try:
    import redis.asyncio as aioredis
    from redis.asyncio.connection import BlockingConnectionPool
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
except ImportError as error:
    raise missing_extra("redis", "the Redis store (--store redis://...)") from error


@contextlib.asynccontextmanager
async def translated(what: str) -> AsyncIterator[None]:
    """Redis errors as RegistryUnavailable naming ``what``; a cancel redis-py lost, raised."""
    try:
        with keep_cancellation():
            yield
    except RedisError as exc:
        raise RegistryUnavailable(
            f"Redis store: {what} failed: {type(exc).__name__}: {exc}"
        ) from exc
    except OSError as exc:
        raise RegistryUnavailable(f"Redis store: {what} failed: {exc}") from exc


class Connector:
    """Makes clients whose socket reads time out after a given number of seconds, and owns
    whatever they share (Sentinel's own connections)."""

    def __init__(
        self, make: Callable[[float], aioredis.Redis], sentinel: Sentinel | None = None
    ) -> None:
        self._make = make
        self._sentinel = sentinel

    def client(self, read_timeout: float) -> aioredis.Redis:
        """A new client."""
        return self._make(read_timeout)

    async def aclose(self) -> None:
        """Close the sentinels' connections, if any."""
        if self._sentinel is not None:
            for client in self._sentinel.sentinels:
                await client.aclose()


#: Connecting is bounded too.
CONNECT_TIMEOUT_S = 5.0
SENTINEL_SCHEME = "redis+sentinel"
#: Connections one client keeps to Redis. A burst of more concurrent commands waits for a free
#: connection (up to the client's read timeout) instead of failing at once, which redis-py's
#: default pool does past 100 ("Too many connections": seen under 200 registrations a second).
#: 64 ran dry under 400 agents on two nodes: a node's concurrent requests each hold one for the
#: whole of a command, the loop's delay included, and waits past the timeout failed heartbeats.
POOL_SIZE = 256


class _WaitingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (follows the primary) that waits for a free connection when all are busy."""


def client_factory(url: str) -> Connector:
    """A factory of clients for ``url`` (redis://, rediss://, unix://, redis+sentinel://)."""
    if url.startswith(f"{SENTINEL_SCHEME}://"):
        return _sentinel_factory(url)

    def plain(read_timeout: float) -> aioredis.Redis:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_SIZE,
            timeout=read_timeout,
            socket_timeout=read_timeout,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        return aioredis.Redis.from_pool(pool)

    return Connector(plain)


def _sentinel_factory(url: str) -> Connector:
    parts = urlsplit(url)
    hosts = []
    for item in parts.netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(
                f"store URL {url!r}: sentinels are HOST:PORT, comma-separated "
                "(redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/0)"
            )
        hosts.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ConfigError(f"store URL {url!r} names no primary: add /PRIMARY_NAME after the hosts")
    name = path[0]
    db = int(path[1]) if len(path) > 1 and path[1].isdigit() else 0
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        hosts,
        socket_timeout=CONNECT_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        sentinel_kwargs={"socket_timeout": CONNECT_TIMEOUT_S},
    )

    def through_sentinel(read_timeout: float) -> aioredis.Redis:
        client: aioredis.Redis = sentinel.master_for(
            name,
            connection_pool_class=_WaitingSentinelPool,
            max_connections=POOL_SIZE,
            timeout=read_timeout,
            db=db,
            socket_timeout=read_timeout,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        return client

    return Connector(through_sentinel, sentinel)
