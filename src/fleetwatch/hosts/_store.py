"""What the registry keeps for hosts: their records, and each host's own feed of orders.

The order feed is apart from the instance change feed (its own index per host), so discovery
watchers never wake for orders and a host wakes only for its own.
"""

from __future__ import annotations

from typing import Protocol

from fleetwatch.errors import Conflict
from fleetwatch.hosts._lease import Fence, Lease
from fleetwatch.hosts._model import Host, Order, OrderState

#: Finished orders a host's feed keeps (the newest); older finished ones are forgotten.
DEFAULT_ORDER_HISTORY = 200


class HostStore(Protocol):
    """Hosts, and the orders of each host with the index of its feed."""

    async def put_host(self, host: Host, ttl: float) -> Host:
        """Record a host's report; it holds for ``ttl`` seconds. The cordon is kept as
        stored (an operator sets it, not the host)."""
        ...

    async def host(self, host_id: str) -> Host | None: ...

    async def hosts(self) -> list[Host]:
        """Every host ever reported, sorted by id (a lapsed one too: it shows as down)."""
        ...

    async def set_cordon(self, host_id: str, cordoned: bool) -> Host | None:
        """Cordon or uncordon; None if the host is unknown."""
        ...

    async def add_order(self, order: Order, *, fence: Fence | None = None) -> tuple[Order, bool]:
        """Store a new order, or return the one already stored under its id: (order, created).

        Raises :class:`~fleetwatch.errors.Conflict` when the id is taken by a different order,
        and :class:`~fleetwatch.errors.Fenced` when ``fence``'s epoch no longer holds its
        lease (checked in the same atomic step as the write).
        """
        ...

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        """Take the lease if it is free or lapsed (a new, higher epoch), or renew it if
        ``holder`` has it; None while another holder's lease runs."""
        ...

    async def renew_lease(self, name: str, holder: str, epoch: int, ttl: float) -> Lease | None:
        """Extend the lease if ``holder`` still holds it under ``epoch``; None if lost."""
        ...

    async def release_lease(self, name: str, holder: str, epoch: int) -> None:
        """Give the lease up at once (a clean shutdown), if still held under ``epoch``."""
        ...

    async def lease(self, name: str) -> Lease | None:
        """The lease as it stands (lapsed or not), None if never taken."""
        ...

    async def report(
        self, host_id: str, order_id: str, state: OrderState, reason: str, instance_id: str
    ) -> Order | None:
        """A host's progress on one of its orders; None if there is no such order."""
        ...

    async def orders(self, host_id: str, after: int = 0) -> tuple[int, list[Order]]:
        """The feed's index, and the orders changed after index ``after``, oldest change first."""
        ...

    async def wait_for_orders(self, host_id: str, index: int, within: float) -> int:
        """The feed's index once it exceeds ``index``, or after ``within`` seconds."""
        ...

    async def now(self) -> float:
        """The store's clock (host leases run on it)."""
        ...

    async def aclose(self) -> None: ...


def trimmed(orders: list[Order], keep: int) -> list[str]:
    """The ids of finished orders beyond the newest ``keep`` finished: what to forget."""
    finished = sorted((o for o in orders if o.state.finished), key=lambda o: o.index)
    return [o.order_id for o in finished[: max(0, len(finished) - keep)]]


def reused(order_id: str) -> str:
    """Why a forgotten order's id cannot be used again."""
    return (
        f"order id {order_id!r} was used by an order that finished and has been forgotten; "
        "an order is carried out once: give the new order a new id"
    )


def check_report(known: Order, state: OrderState) -> None:
    """Raise Conflict for a report on a finished order (a stale report must not undo it)."""
    if known.state.finished and state != known.state:
        raise Conflict(
            f"order {known.order_id!r} already ended {known.state.value}; "
            f"a report of {state.value!r} comes too late"
        )
