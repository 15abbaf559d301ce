"""Consul-style blocking queries: ``?index=N&wait=30s`` returns when the answer changes."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.requests import Request

from fleetwatch.config._durations import parse_duration
from fleetwatch.registry._model import NOTICE_KEY
from fleetwatch.registry._store import RegistryStore, consistent_read

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected while its blocking query waited."""


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run ``work``, but give up as soon as the client disconnects (a blocking query must not
    hold the server, or its shutdown, for a client that is no longer there)."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (watcher, task):
            if not pending.done():
                pending.cancel()
        # Both have finished (or taken their cancellation) before we look at the result.
        await asyncio.gather(watcher, task, return_exceptions=True)
    if task.cancelled():
        raise ClientGone
    return task.result()


#: Consul's default wait is 5 minutes; proxies often cut idle requests sooner, so a minute.
DEFAULT_WAIT_S = 60.0
MAX_WAIT_S = 600.0


def parse_wait(value: str | None) -> float:
    """The ``wait`` parameter: a duration, capped at ten minutes."""
    if value is None:
        return DEFAULT_WAIT_S
    return min(parse_duration(value), MAX_WAIT_S)


async def blocking_read(
    store: RegistryStore,
    index: int | None,
    wait: float,
    read: Callable[[], Awaitable[T]],
    *,
    concerns: Callable[[tuple[str, str]], bool] | None = None,
) -> tuple[int, T]:
    """Read now, or, given the caller's last ``index``, once the answer differs from what it was
    at that index or ``wait`` (plus up to 1/16 jitter, as Consul does) has passed.

    The change index is registry-wide, so a change elsewhere wakes the wait; the answer is then
    compared and the wait goes on if this answer did not change. With ``concerns`` (whether a
    change to (service, instance_id) may touch the answer), changes the store names that
    concern none of it are slept through without a read: an agent following its own record
    must not read Redis for each of a rollout's thousand changes. An index ahead of the
    store's (the store restarted) answers at once, so the client resynchronises.
    """
    current, answer = await consistent_read(store, read)
    if index is None or current < index:
        return current, answer
    # The index is registry-wide: under a fleet's churn it has moved on by the time a client
    # asks again, nearly always. Answering each such ask at once, 400 agents following their
    # own record polled without pause, each poll a Redis read; so changes since the client's
    # index that cannot touch its answer are slept through as well.
    if current > index and not await _untouched(store, index, current, concerns):
        return current, answer
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait + random.uniform(0, wait / 16)
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return current, answer
        newer = await store.wait_for_change(current, remaining)
        if newer == current:
            return current, answer
        if newer > current and await _untouched(store, current, newer, concerns):
            current = newer  # the answer at ``newer`` is the one we hold
            continue
        newer, fresh = await consistent_read(store, read)
        if fresh != answer or newer < current:
            return newer, fresh
        current = newer


#: How long a blocking query gives the node's change follower to catch up with the store,
#: looking this many times.
CATCH_UP_S = 0.1
CATCH_UP_LOOKS = 5


async def _untouched(
    store: RegistryStore,
    after: int,
    upto: int,
    concerns: Callable[[tuple[str, str]], bool] | None,
) -> bool:
    """Whether no change in ``(after, upto]`` may touch the answer, as far as the node knows
    without a read (the change follower may be a little behind the store: it is given up to
    :data:`CATCH_UP_S`). False when that is not known."""
    if concerns is None:
        return False
    for _ in range(CATCH_UP_LOOKS):
        if store.changed_keys(upto, upto) is not None:
            break  # the node has seen every change up to ``upto``
        await asyncio.sleep(CATCH_UP_S / CATCH_UP_LOOKS)
    changed = store.changed_keys(after, upto)
    return changed is not None and not any(key == NOTICE_KEY or concerns(key) for key in changed)
