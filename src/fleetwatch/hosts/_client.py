"""The hosts API, as host daemons and the CLI call it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleetwatch.discovery._registry_client import REQUEST_TIMEOUT_S, RegistryClient
from fleetwatch.hosts._model import Host, Order, OrderAction, OrderState


def _host(data: Mapping[str, Any]) -> Host:
    return Host.from_dict(data)


class HostsClient(RegistryClient):
    """:class:`~fleetwatch.discovery.RegistryClient` with the hosts API."""

    async def report_host(self, host: Host, ttl: float) -> Host:
        """Report this host (needs its host token); returns the stored record."""
        body = {
            "address": host.address,
            "labels": dict(host.labels),
            "capacity": host.capacity,
            "gpus": host.gpus,
            "version": host.version,
            "instances": dict(host.instances),
            "ttl": ttl,
        }
        reply = await self._call("PUT", f"/v1/hosts/{host.host_id}", json=body)
        return _host(reply.json()["host"])

    async def hosts(self) -> list[tuple[Host, bool]]:
        """Every host, and whether its daemon is up."""
        reply = await self._call("GET", "/v1/hosts")
        return [(_host(h), bool(h["alive"])) for h in reply.json()["hosts"]]

    async def host(self, host_id: str) -> Host:
        reply = await self._call("GET", f"/v1/hosts/{host_id}")
        return _host(reply.json()["host"])

    async def cordon(self, host_id: str, cordoned: bool = True) -> Host:
        reply = await self._call("PUT", f"/v1/hosts/{host_id}/cordon", json={"cordoned": cordoned})
        return _host(reply.json()["host"])

    async def add_order(self, order: Order) -> tuple[Order, bool]:
        """Write an order (needs the deploy scope): (the stored order, whether it is new)."""
        body: dict[str, Any] = {
            "order_id": order.order_id,
            "action": order.action.value,
            "service": order.service,
        }
        if order.action is OrderAction.START:
            body.update(profile=order.profile, version=order.version, params=dict(order.params))
        if order.instance_id:
            body["instance_id"] = order.instance_id
        reply = await self._call("POST", f"/v1/hosts/{order.host_id}/orders", json=body)
        data = reply.json()
        return Order.from_dict(data["order"]), bool(data["created"])

    async def orders(
        self, host_id: str, *, index: int | None = None, wait: float = 30.0
    ) -> tuple[int, list[Order]]:
        """The feed's index and the orders changed after ``index`` (all without one); with
        ``index``, waits up to ``wait`` seconds for a change."""
        params: dict[str, str | int] = {}
        timeout = REQUEST_TIMEOUT_S
        if index is not None:
            params = {"index": index, "wait": f"{wait:g}s"}
            timeout += wait * 1.1
        reply = await self._call(
            "GET", f"/v1/hosts/{host_id}/orders", params=params, timeout=timeout
        )
        data = reply.json()
        return int(data["index"]), [Order.from_dict(o) for o in data["orders"]]

    async def order(self, host_id: str, order_id: str) -> Order | None:
        """One order of a host, as it stands (None if the feed no longer holds it)."""
        _, found = await self.orders(host_id)
        return next((o for o in found if o.order_id == order_id), None)

    async def report(
        self,
        host_id: str,
        order_id: str,
        state: OrderState,
        reason: str = "",
        instance_id: str = "",
    ) -> Order:
        """Report progress on one of this host's orders (needs its host token)."""
        body: dict[str, Any] = {"state": state.value, "reason": reason[:2000]}
        if instance_id:
            body["instance_id"] = instance_id
        reply = await self._call("PUT", f"/v1/hosts/{host_id}/orders/{order_id}", json=body)
        return Order.from_dict(reply.json()["order"])
