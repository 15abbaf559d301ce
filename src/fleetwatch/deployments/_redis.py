"""Deployments on Redis, under the registry's hash tag, fenced by the host store's leases.

Keys: ``{NS}:deploy`` hash service -> deployment JSON; ``{NS}:dindex`` the feed's index;
``{NS}:dfeed`` stream (entry id ``<index>-1``) that waiting readers block on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fleetwatch.deployments._model import Deployment
from fleetwatch.deployments._store import cas_loop, dumps
from fleetwatch.errors import Fenced
from fleetwatch.hosts._lease import Fence
from fleetwatch.hosts._redis import FENCE_CHECK, MAX_WAIT_S, STREAM_LENGTH, RedisHostStore
from fleetwatch.registry.stores._redis_connect import translated

# KEYS: deploy hash, dindex, dfeed, lease. ARGV: service, expected JSON ('' = absent),
# new JSON, stream length, fence epoch ('' = none). Returns the new index, 0 when the record
# changed since it was read, -2 when the fence lost its lease.
_SWAP = (
    FENCE_CHECK
    + """
if not fence_holds(KEYS[4], ARGV[5]) then return -2 end
local current = redis.call('HGET', KEYS[1], ARGV[1])
if (current or '') ~= ARGV[2] then return 0 end
local index = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], index .. '-1', 'service', ARGV[1])
return index
"""
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisDeploymentStore:
    """A :class:`~fleetwatch.deployments.DeploymentStore` sharing a :class:`RedisHostStore`'s
    connections and leases (it does not close them: the host store does)."""

    def __init__(self, hosts: RedisHostStore) -> None:
        self._hosts = hosts
        self._client = hosts.client
        self._keys = [hosts.key("deploy"), hosts.key("dindex"), hosts.key("dfeed")]
        self._swap = self._client.register_script(_SWAP)

    async def _raw(self, service: str) -> str | None:
        async with translated("read deployment"):
            raw = await self._client.hget(self._keys[0], service)
        return None if raw is None else _text(raw)

    async def deployment(self, service: str) -> Deployment | None:
        raw = await self._raw(service)
        return None if raw is None else self._load(raw)

    @staticmethod
    def _load(raw: str) -> Deployment:
        return Deployment.from_dict(json.loads(raw))

    async def deployments(self) -> tuple[int, list[Deployment]]:
        async with translated("list deployments"):
            pipe = self._client.pipeline(transaction=True)
            pipe.get(self._keys[1])
            pipe.hgetall(self._keys[0])
            index, raw = await pipe.execute()
        found = sorted((self._load(_text(v)) for v in raw.values()), key=lambda d: d.service)
        return int(index or 0), found

    async def wait_for_change(self, index: int, within: float) -> int:
        async with translated("read deployment index"):
            current = int(await self._client.get(self._keys[1]) or 0)
        if current != index:
            return current
        block_ms = max(1, int(min(within, MAX_WAIT_S) * 1000))
        async with translated("wait for deployments"):
            await self._hosts.blocking.xread({self._keys[2]: f"{index}-1"}, count=1, block=block_ms)
            return int(await self._client.get(self._keys[1]) or 0)

    async def swap(
        self,
        service: str,
        change: Callable[[Deployment | None], Deployment],
        *,
        fence: Fence | None = None,
    ) -> Deployment:
        async def read() -> tuple[str | None, Deployment | None]:
            raw = await self._raw(service)
            return raw, None if raw is None else self._load(raw)

        async def write(raw: str | None, updated: Deployment) -> Deployment | None:
            # The stored JSON holds no index (the script assigns it): the write returns it.
            stored = updated.with_changes(index=0)
            async with translated("write deployment"):
                result = int(
                    await self._swap(
                        keys=[*self._keys, self._hosts.lease_key(fence.name if fence else "")],
                        args=[
                            service,
                            raw or "",
                            dumps(stored),
                            STREAM_LENGTH,
                            str(fence.epoch) if fence else "",
                        ],
                    )
                )
            if result == -2:
                assert fence is not None
                raise Fenced(f"epoch {fence.epoch} no longer holds the {fence.name!r} lease")
            if result == 0:
                return None
            return stored.with_changes(index=result)

        return await cas_loop(read, write, change, f"deployment {service!r}")

    async def aclose(self) -> None:
        return None
