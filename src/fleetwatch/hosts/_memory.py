"""The embedded host store: hosts and order feeds in this process."""

from __future__ import annotations

import time

from fleetwatch._change_index import ChangeIndex
from fleetwatch.errors import Conflict, Fenced
from fleetwatch.hosts._lease import Fence, Lease
from fleetwatch.hosts._model import Host, Order, OrderState
from fleetwatch.hosts._store import DEFAULT_ORDER_HISTORY, check_report, reused, trimmed


class _Feed:
    """One host's orders and the index of its feed."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        #: Every order id ever used here, with what it asked for: an id stays taken after
        #: its order is forgotten, so a resent old order is never carried out again.
        self.used: dict[str, Order] = {}
        self.index = ChangeIndex()

    def bump(self) -> int:
        return self.index.bump()


class MemoryHostStore:
    """A :class:`~fleetwatch.hosts.HostStore` in dictionaries."""

    def __init__(self, *, order_history: int = DEFAULT_ORDER_HISTORY) -> None:
        self._hosts: dict[str, Host] = {}
        self._feeds: dict[str, _Feed] = {}
        self._history = order_history
        self._leases: dict[str, Lease] = {}
        self._epochs: dict[str, int] = {}

    def _feed(self, host_id: str) -> _Feed:
        return self._feeds.setdefault(host_id, _Feed())

    async def now(self) -> float:
        return time.time()

    async def put_host(self, host: Host, ttl: float) -> Host:
        now = time.time()
        known = self._hosts.get(host.host_id)
        stored = host.with_changes(
            cordoned=known.cordoned if known else False, heartbeat_at=now, expires_at=now + ttl
        )
        self._hosts[host.host_id] = stored
        return stored

    async def host(self, host_id: str) -> Host | None:
        return self._hosts.get(host_id)

    async def hosts(self) -> list[Host]:
        return [self._hosts[h] for h in sorted(self._hosts)]

    async def set_cordon(self, host_id: str, cordoned: bool) -> Host | None:
        known = self._hosts.get(host_id)
        if known is None:
            return None
        self._hosts[host_id] = known.with_changes(cordoned=cordoned)
        return self._hosts[host_id]

    def check_fence(self, fence: Fence | None) -> None:
        """Raise Fenced unless ``fence``'s epoch holds its lease now."""
        if fence is None:
            return
        held = self._leases.get(fence.name)
        if held is None or held.epoch != fence.epoch or held.expires_at <= time.time():
            raise Fenced(
                f"epoch {fence.epoch} no longer holds the {fence.name!r} lease "
                f"(now: {held.holder + ' epoch ' + str(held.epoch) if held else 'nobody'})"
            )

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        now = time.time()
        held = self._leases.get(name)
        if held is not None and held.expires_at > now and held.holder != holder:
            return None
        if held is None or held.expires_at <= now:
            self._epochs[name] = self._epochs.get(name, 0) + 1
        lease = Lease(name, holder, self._epochs[name], now + ttl)
        self._leases[name] = lease
        return lease

    async def renew_lease(self, name: str, holder: str, epoch: int, ttl: float) -> Lease | None:
        now = time.time()
        held = self._leases.get(name)
        if held is None or (held.holder, held.epoch) != (holder, epoch) or held.expires_at <= now:
            return None
        self._leases[name] = Lease(name, holder, epoch, now + ttl)
        return self._leases[name]

    async def release_lease(self, name: str, holder: str, epoch: int) -> None:
        held = self._leases.get(name)
        if held is not None and (held.holder, held.epoch) == (holder, epoch):
            self._leases[name] = Lease(name, holder, epoch, 0.0)

    async def lease(self, name: str) -> Lease | None:
        return self._leases.get(name)

    async def add_order(self, order: Order, *, fence: Fence | None = None) -> tuple[Order, bool]:
        self.check_fence(fence)
        feed = self._feed(order.host_id)
        known = feed.orders.get(order.order_id)
        if known is not None:
            if not known.same_request(order):
                raise Conflict(f"order id {order.order_id!r} is taken by a different order")
            return known, False
        if order.order_id in feed.used:
            raise Conflict(reused(order.order_id))
        now = time.time()
        stored = order.with_changes(
            state=OrderState.PENDING, created_at=now, updated_at=now, index=feed.bump()
        )
        feed.orders[order.order_id] = stored
        feed.used[order.order_id] = stored
        for old in trimmed(list(feed.orders.values()), self._history):
            del feed.orders[old]
        return stored, True

    async def report(
        self, host_id: str, order_id: str, state: OrderState, reason: str, instance_id: str
    ) -> Order | None:
        feed = self._feed(host_id)
        known = feed.orders.get(order_id)
        if known is None:
            return None
        check_report(known, state)
        stored = known.with_changes(
            state=state,
            reason=reason,
            instance_id=instance_id or known.instance_id,
            updated_at=time.time(),
            index=feed.bump(),
        )
        feed.orders[order_id] = stored
        return stored

    async def orders(self, host_id: str, after: int = 0) -> tuple[int, list[Order]]:
        feed = self._feed(host_id)
        changed = sorted((o for o in feed.orders.values() if o.index > after), key=_by_index)
        return feed.index.value, changed

    async def wait_for_orders(self, host_id: str, index: int, within: float) -> int:
        return await self._feed(host_id).index.wait_past(index, within)

    async def aclose(self) -> None:
        return None


def _by_index(order: Order) -> int:
    return order.index
