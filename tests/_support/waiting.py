"""Waiting for something another component does: a check's state, or a probe's answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fleetwatch.health import CheckState, HealthScheduler


async def wait_for_state(
    scheduler: HealthScheduler,
    name: str,
    predicate: Callable[[CheckState], bool],
    *,
    within: float,
) -> CheckState:
    """Wait until the named check satisfies ``predicate``; fail the test after ``within``."""
    async with asyncio.timeout(within):
        while True:
            revision = scheduler.revision
            state = scheduler.state(name)
            assert state is not None
            if predicate(state):
                return state
            await scheduler.wait_for_change(revision)


async def poll_until(
    probe: Callable[[], Awaitable[object]], expected: object, *, within: float, every: float = 0.05
) -> None:
    """Poll another process until ``probe()`` returns ``expected``; fail after ``within``."""
    async with asyncio.timeout(within):
        # Another process cannot set one of our events, so polling is the honest way to wait.
        while await probe() != expected:  # noqa: ASYNC110
            await asyncio.sleep(every)
