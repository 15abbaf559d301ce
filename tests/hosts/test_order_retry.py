"""A host daemon carries out again an order whose report to the registry failed."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from fleetwatch.errors import RegistryUnavailable
from fleetwatch.hosts import Order, OrderAction, OrderState
from fleetwatch.hosts._daemon import HostDaemon, HostSettings


class FlakyFeed:
    """A host's feed holding one stop order, whose first report fails as a reset connection
    does; a blocking read waits, as the feed does when nothing changes."""

    def __init__(self) -> None:
        self.order = Order(
            order_id="stop-llm-1", host_id="h0", action=OrderAction.STOP, service="llm",
            instance_id="llm-1",
        )  # fmt: skip
        self.reports: list[OrderState] = []
        self.failures = 1

    async def orders(self, host_id: str, index: int | None = None, wait: float = 0) -> Any:
        if index is not None:
            await asyncio.sleep(wait)
            return index, []
        return 1, [self.order]

    async def instances(self, service: str) -> Any:
        return 1, []  # no stray instance to drain through the registry

    async def report(self, host_id: str, order_id: str, state: OrderState, *_: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise RegistryUnavailable("registry at http://127.0.0.1:1 unreachable: ReadError")
        self.reports.append(state)


async def test_an_order_whose_report_failed_is_carried_out_again(tmp_path: Path) -> None:
    """The stop order's first report fails and the feed does not change again: the daemon
    reads the whole feed again and reports the order (it used to wait for ever)."""
    feed = FlakyFeed()
    daemon = HostDaemon(
        HostSettings("h0", "127.0.0.1", None, None, tmp_path),
        client=feed,  # type: ignore[arg-type]
    )
    loop = asyncio.create_task(daemon._order_loop())
    try:
        async with asyncio.timeout(5):
            while not feed.reports:  # noqa: ASYNC110 - the daemon's loop reports
                await asyncio.sleep(0.05)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    assert feed.failures == 0
    assert feed.reports == [OrderState.FAILED]
