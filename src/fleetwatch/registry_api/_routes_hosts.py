"""Hosts and their orders: a host reports itself and follows its own order feed; a ``deploy``
token writes orders and cordons; a host token reads and reports on its own orders only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from fleetwatch.errors import Conflict, InstanceNotFound
from fleetwatch.hosts._model import OrderAction, OrderState
from fleetwatch.hosts._store import HostStore
from fleetwatch.registry_api import _host_schemas as schemas
from fleetwatch.registry_api._blocking import parse_wait, unless_disconnected
from fleetwatch.registry_api._deps import NAME_PATTERN, Caller, Reader
from fleetwatch.registry_api._errors import ERROR_RESPONSES
from fleetwatch.security._auth import Scope

router = APIRouter(tags=["hosts"], responses=ERROR_RESPONSES)
Name = Annotated[str, Path(pattern=NAME_PATTERN)]
HOST = "/v1/hosts/{host_id}"


async def host_store(request: Request) -> HostStore:
    """The host store this app serves."""
    found: HostStore = request.app.state.hosts
    return found


Hosts = Annotated[HostStore, Depends(host_store)]


def _unknown(host_id: str) -> InstanceNotFound:
    return InstanceNotFound(
        f"no host {host_id!r} has reported (a host appears once its daemon runs)"
    )


@router.put(HOST, response_model=schemas.HostReply)
async def report_host(
    *, host_id: Name, body: schemas.HostBody, who: Caller, hosts: Hosts
) -> schemas.HostReply:
    """A host daemon's report of itself; it holds for ``ttl`` seconds."""
    who.require_host(host_id, f"reporting host {host_id!r}")
    stored = await hosts.put_host(body.host(host_id), body.ttl)
    return schemas.HostReply(host=schemas.HostOut.of(stored, await hosts.now()))


@router.get("/v1/hosts", response_model=schemas.HostsReply)
async def list_hosts(*, who: Reader, hosts: Hosts) -> schemas.HostsReply:
    """Every host, its capacity, what runs on it, and whether its daemon is up."""
    now = await hosts.now()
    return schemas.HostsReply(hosts=[schemas.HostOut.of(h, now) for h in await hosts.hosts()])


@router.get(HOST, response_model=schemas.HostReply)
async def get_host(*, host_id: Name, who: Reader, hosts: Hosts) -> schemas.HostReply:
    """One host."""
    found = await hosts.host(host_id)
    if found is None:
        raise _unknown(host_id)
    return schemas.HostReply(host=schemas.HostOut.of(found, await hosts.now()))


@router.put(HOST + "/cordon", response_model=schemas.HostReply)
async def cordon(
    *, host_id: Name, body: schemas.CordonBody, who: Caller, hosts: Hosts
) -> schemas.HostReply:
    """Cordon a host (no new start order lands on it) or uncordon it."""
    who.require(Scope.DEPLOY, f"cordoning host {host_id!r}")
    found = await hosts.set_cordon(host_id, body.cordoned)
    if found is None:
        raise _unknown(host_id)
    return schemas.HostReply(host=schemas.HostOut.of(found, await hosts.now()))


@router.post(
    HOST + "/orders",
    response_model=schemas.OrderReply,
    status_code=201,
    responses={200: {"model": schemas.OrderReply, "description": "The order was already stored."}},
)
async def add_order(
    *,
    host_id: Name,
    body: schemas.OrderBody,
    who: Caller,
    hosts: Hosts,
    response: Response,
) -> schemas.OrderReply:
    """Write an order to a host. The same order id again returns the stored order (200)."""
    who.require(Scope.DEPLOY, f"writing an order to host {host_id!r}")
    target = await hosts.host(host_id)
    if target is None:
        raise _unknown(host_id)
    order = body.order(host_id)
    if order.action is OrderAction.START and target.cordoned:
        _, known = await hosts.orders(host_id)
        if not any(o.order_id == order.order_id for o in known):
            raise Conflict(f"host {host_id!r} is cordoned: no new instance starts there")
    stored, created = await hosts.add_order(order)
    if not created:
        response.status_code = 200
    return schemas.OrderReply(order=schemas.OrderOut.of(stored), created=created)


@router.get(HOST + "/orders", response_model=schemas.OrdersReply)
async def orders(
    *,
    request: Request,
    host_id: Name,
    who: Caller,
    hosts: Hosts,
    index: Annotated[int | None, Query(ge=0)] = None,
    wait: str | None = None,
) -> schemas.OrdersReply:
    """The host's orders changed after ``index`` (all of them without it); with ``index``,
    a blocking query: it answers when the feed moves past it or after ``wait``. A host's own
    token reads its own feed; any other host's gets 403; other tokens need ``read``."""
    what = f"reading host {host_id!r}'s orders"
    who.require_not_other_host(host_id, what)
    if who.host_id != host_id:
        who.require(Scope.READ, what)
    if index is not None:
        await unless_disconnected(request, hosts.wait_for_orders(host_id, index, parse_wait(wait)))
    current, changed = await hosts.orders(host_id, after=index or 0)
    if index is not None and current < index:  # the store restarted: everything, afresh
        current, changed = await hosts.orders(host_id)
    return schemas.OrdersReply(index=current, orders=[schemas.OrderOut.of(o) for o in changed])


@router.put(HOST + "/orders/{order_id}", response_model=schemas.OrderReply)
async def report(
    *, host_id: Name, order_id: Name, body: schemas.ReportBody, who: Caller, hosts: Hosts
) -> schemas.OrderReply:
    """A host's progress on one of its orders."""
    who.require_host(host_id, f"reporting on host {host_id!r}'s orders")
    stored = await hosts.report(
        host_id, order_id, OrderState(body.state), body.reason, body.instance_id or ""
    )
    if stored is None:
        raise InstanceNotFound(f"host {host_id!r} has no order {order_id!r}")
    return schemas.OrderReply(order=schemas.OrderOut.of(stored), created=False)
