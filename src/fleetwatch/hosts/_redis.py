"""The host store on Redis: many registry nodes share hosts and order feeds.

Keys, under the registry's hash tag ``{NS}`` (one slot, as the instance keys):

- ``{NS}:hosts`` hash host id -> host JSON; ``{NS}:cordoned`` set of cordoned host ids;
- ``{NS}:orders:<host>`` hash order id -> order JSON; ``{NS}:oidx:<host>`` hash order id ->
  its index; ``{NS}:oindex:<host>`` the feed's index;
- ``{NS}:ofeed:<host>`` stream, entry id ``<index>-1``: what a waiting host blocks on;
- ``{NS}:oids:<host>`` set of every order id ever used (an id stays taken once forgotten);
- ``{NS}:lease:<name>`` hash holder/epoch/expires, ``{NS}:lease-epoch:<name>`` its counter.

A new order and a report each move the order, its index and the stream in one Lua script.
"""

from __future__ import annotations

import json
from typing import Any

from fleetwatch.errors import Conflict, Fenced
from fleetwatch.hosts._lease import Fence, Lease
from fleetwatch.hosts._model import Host, Order, OrderState
from fleetwatch.hosts._store import DEFAULT_ORDER_HISTORY, check_report, reused, trimmed
from fleetwatch.registry.stores._redis_connect import client_factory, translated

#: Every command but a blocking wait is bounded by this.
COMMAND_TIMEOUT_S = 5.0
#: The longest one blocking wait for orders (a host asks again after it).
MAX_WAIT_S = 60.0
#: Entries the order stream keeps: it only wakes waiters, the hashes hold the orders.
STREAM_LENGTH = 1000

#: Lua: whether epoch ARGV-style ``epoch`` holds the lease hash ``key`` now ('' = no fence).
FENCE_CHECK = """
local function fence_holds(key, epoch)
  if epoch == '' then return true end
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local held = redis.call('HMGET', key, 'epoch', 'expires')
  return held[1] == epoch and tonumber(held[2] or '0') > now_ms
end
"""

# KEYS: orders, oidx, oindex, ofeed, lease, used ids. ARGV: order id, order JSON, only_if_new
# (1/0), stream length, fence epoch ('' for none). Returns {created, stored JSON, index}; {-1}
# when only_if_new=0 and the order is unknown; {-2} when the fence's epoch lost the lease; {-3}
# when the id was used by an order since forgotten.
_WRITE_ORDER = (
    FENCE_CHECK
    + """
if not fence_holds(KEYS[5], ARGV[5]) then return {-2} end
local known = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[3] == '1' then
  if known then return {0, known, tonumber(redis.call('HGET', KEYS[2], ARGV[1]))} end
  if redis.call('SISMEMBER', KEYS[6], ARGV[1]) == 1 then return {-3} end
  redis.call('SADD', KEYS[6], ARGV[1])
elseif not known then
  return {-1}
end
local index = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], index)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], index .. '-1', 'order', ARGV[1])
return {1, ARGV[2], index}
"""
)


# KEYS: lease hash, epoch counter. ARGV: holder, ttl ms. Returns {holder, epoch, expires ms}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = redis.call('HMGET', KEYS[1], 'holder', 'epoch', 'expires')
local running = held[3] and tonumber(held[3]) > now
if running and held[1] ~= ARGV[1] then return {held[1], held[2], held[3]} end
local epoch = held[2]
if not running then epoch = tostring(redis.call('INCR', KEYS[2])) end
local expires = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'epoch', epoch, 'expires', expires)
return {ARGV[1], epoch, tostring(expires)}
"""
# KEYS: lease hash. ARGV: holder, epoch, ttl ms (0: release). Returns expires ms, or -1 if lost.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = redis.call('HMGET', KEYS[1], 'holder', 'epoch', 'expires')
if held[1] ~= ARGV[1] or held[2] ~= ARGV[2] or tonumber(held[3] or '0') <= now then
  return -1
end
local expires = now + tonumber(ARGV[3])
if tonumber(ARGV[3]) == 0 then expires = 0 end
redis.call('HSET', KEYS[1], 'expires', expires)
return expires
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisHostStore:
    """A :class:`~fleetwatch.hosts.HostStore` on Redis (or through Sentinel)."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "fleetwatch",
        order_history: int = DEFAULT_ORDER_HISTORY,
    ) -> None:
        self._connect = client_factory(url)
        self._client = self._connect.client(COMMAND_TIMEOUT_S)
        # Blocking reads hold their socket past the usual timeout, on a client of their own.
        self._blocking = self._connect.client(COMMAND_TIMEOUT_S + MAX_WAIT_S)
        self._tag = "{" + namespace + "}"
        self._history = order_history
        self._write_order = self._client.register_script(_WRITE_ORDER)
        self._acquire = self._client.register_script(_ACQUIRE)
        self._renew = self._client.register_script(_RENEW)

    @property
    def client(self) -> Any:
        """The Redis client (the deployment store shares it)."""
        return self._client

    @property
    def blocking(self) -> Any:
        """The client for blocking reads."""
        return self._blocking

    def key(self, name: str, host_id: str = "") -> str:
        """A key under this store's hash tag."""
        return self._key(name, host_id)

    def _key(self, name: str, host_id: str = "") -> str:
        return f"{self._tag}:{name}" + (f":{host_id}" if host_id else "")

    def _feed_keys(self, host_id: str) -> list[str]:
        return [self._key(n, host_id) for n in ("orders", "oidx", "oindex", "ofeed")]

    async def now(self) -> float:
        async with translated("TIME"):
            seconds, micros = await self._client.time()
        return float(seconds) + float(micros) / 1e6

    async def put_host(self, host: Host, ttl: float) -> Host:
        now = await self.now()
        stored = host.with_changes(cordoned=False, heartbeat_at=now, expires_at=now + ttl)
        async with translated("put host"):
            await self._client.hset(self._key("hosts"), host.host_id, json.dumps(stored.to_dict()))
            cordoned = bool(await self._client.sismember(self._key("cordoned"), host.host_id))
        return stored.with_changes(cordoned=cordoned)

    async def host(self, host_id: str) -> Host | None:
        async with translated("get host"):
            raw = await self._client.hget(self._key("hosts"), host_id)
            cordoned = bool(await self._client.sismember(self._key("cordoned"), host_id))
        if raw is None:
            return None
        return Host.from_dict(json.loads(_text(raw))).with_changes(cordoned=cordoned)

    async def hosts(self) -> list[Host]:
        async with translated("list hosts"):
            raw = await self._client.hgetall(self._key("hosts"))
            cordoned = {_text(h) for h in await self._client.smembers(self._key("cordoned"))}
        found = [Host.from_dict(json.loads(_text(v))) for v in raw.values()]
        return sorted(
            (h.with_changes(cordoned=h.host_id in cordoned) for h in found),
            key=lambda h: h.host_id,
        )

    async def set_cordon(self, host_id: str, cordoned: bool) -> Host | None:
        if await self.host(host_id) is None:
            return None
        async with translated("cordon"):
            if cordoned:
                await self._client.sadd(self._key("cordoned"), host_id)
            else:
                await self._client.srem(self._key("cordoned"), host_id)
        return await self.host(host_id)

    def lease_key(self, name: str) -> str:
        return self._key("lease", name)

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        async with translated("acquire lease"):
            got = await self._acquire(
                keys=[self.lease_key(name), self._key("lease-epoch", name)],
                args=[holder, max(1, int(ttl * 1000))],
            )
        who, epoch, expires = _text(got[0]), int(_text(got[1])), int(_text(got[2]))
        return Lease(name, holder, epoch, expires / 1000) if who == holder else None

    async def renew_lease(self, name: str, holder: str, epoch: int, ttl: float) -> Lease | None:
        async with translated("renew lease"):
            expires = int(
                await self._renew(
                    keys=[self.lease_key(name)], args=[holder, epoch, max(1, int(ttl * 1000))]
                )
            )
        return Lease(name, holder, epoch, expires / 1000) if expires >= 0 else None

    async def release_lease(self, name: str, holder: str, epoch: int) -> None:
        async with translated("release lease"):
            await self._renew(keys=[self.lease_key(name)], args=[holder, epoch, 0])

    async def lease(self, name: str) -> Lease | None:
        async with translated("read lease"):
            held = await self._client.hmget(self.lease_key(name), "holder", "epoch", "expires")
        if held[0] is None:
            return None
        return Lease(name, _text(held[0]), int(_text(held[1])), int(_text(held[2])) / 1000)

    async def _write(
        self, order: Order, *, only_if_new: bool, fence: Fence | None = None
    ) -> tuple[int, Order | None]:
        async with translated("write order"):
            reply = await self._write_order(
                keys=[
                    *self._feed_keys(order.host_id),
                    self.lease_key(fence.name if fence else ""),
                    self._key("oids", order.host_id),
                ],
                args=[
                    order.order_id,
                    json.dumps(order.to_dict()),
                    "1" if only_if_new else "0",
                    STREAM_LENGTH,
                    str(fence.epoch) if fence else "",
                ],
            )
        created = int(reply[0])
        if created == -3:
            raise Conflict(reused(order.order_id))
        if created == -2:
            assert fence is not None
            raise Fenced(f"epoch {fence.epoch} no longer holds the {fence.name!r} lease")
        if created < 0:
            return created, None
        return created, Order.from_dict(json.loads(_text(reply[1]))).with_changes(
            index=int(reply[2])
        )

    async def add_order(self, order: Order, *, fence: Fence | None = None) -> tuple[Order, bool]:
        now = await self.now()
        fresh = order.with_changes(state=OrderState.PENDING, created_at=now, updated_at=now)
        created, stored = await self._write(fresh, only_if_new=True, fence=fence)
        assert stored is not None
        if not created:
            if not stored.same_request(order):
                raise Conflict(f"order id {order.order_id!r} is taken by a different order")
            return stored, False
        await self._trim(order.host_id)
        return stored, True

    async def _trim(self, host_id: str) -> None:
        _, orders = await self.orders(host_id)
        forget = trimmed(orders, self._history)
        if forget:
            keys = self._feed_keys(host_id)
            async with translated("trim orders"):
                await self._client.hdel(keys[0], *forget)
                await self._client.hdel(keys[1], *forget)

    async def report(
        self, host_id: str, order_id: str, state: OrderState, reason: str, instance_id: str
    ) -> Order | None:
        keys = self._feed_keys(host_id)
        async with translated("read order"):
            raw = await self._client.hget(keys[0], order_id)
        if raw is None:
            return None
        known = Order.from_dict(json.loads(_text(raw)))
        check_report(known, state)
        changed = known.with_changes(
            state=state,
            reason=reason,
            instance_id=instance_id or known.instance_id,
            updated_at=await self.now(),
        )
        _, stored = await self._write(changed, only_if_new=False)
        return stored

    async def orders(self, host_id: str, after: int = 0) -> tuple[int, list[Order]]:
        keys = self._feed_keys(host_id)
        async with translated("read orders"):
            pipe = self._client.pipeline(transaction=True)
            pipe.get(keys[2])
            pipe.hgetall(keys[0])
            pipe.hgetall(keys[1])
            index, raw, indexes = await pipe.execute()
        found = []
        for key, value in raw.items():
            at = int(indexes.get(key, 0))
            if at > after:
                found.append(Order.from_dict(json.loads(_text(value))).with_changes(index=at))
        return int(index or 0), sorted(found, key=lambda o: o.index)

    async def wait_for_orders(self, host_id: str, index: int, within: float) -> int:
        keys = self._feed_keys(host_id)
        async with translated("read order index"):
            current = int(await self._client.get(keys[2]) or 0)
        if current != index:
            return current  # newer, or older: Redis lost its data and the host resyncs
        block_ms = max(1, int(min(within, MAX_WAIT_S) * 1000))
        async with translated("wait for orders"):
            await self._blocking.xread({keys[3]: f"{index}-1"}, count=1, block=block_ms)
            return int(await self._client.get(keys[2]) or 0)

    async def aclose(self) -> None:
        await self._blocking.aclose()
        await self._client.aclose()
        await self._connect.aclose()
