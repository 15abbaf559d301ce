"""Per-instance concurrency limits with one bounded queue, and backends' Retry-After.

A request takes a slot on an instance before it is sent. When every candidate is full, it waits
in a bounded queue (FIFO by wake-up) until a slot frees or ``queue_timeout`` passes; a full
queue or a timeout is :class:`Saturated`, which the gateway answers with 429 and Retry-After. An
instance that answered 429/503 with ``Retry-After`` gets no new requests until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Sequence

from fleetwatch.registry._model import Instance

Key = tuple[str, str]


class Saturated(Exception):
    """Every instance is full (or backing off) and the queue cannot take the request."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Admission:
    """Slots per instance, a bounded wait for one, and back-off windows."""

    def __init__(self, *, per_instance: int, queue_limit: int, queue_timeout: float) -> None:
        self.per_instance = per_instance
        self.queue_limit = queue_limit
        self.queue_timeout = queue_timeout
        self.in_flight: dict[Key, int] = {}
        self.waiting = 0
        self._backoff_until: dict[Key, float] = {}
        self._waiters: list[asyncio.Future[None]] = []

    async def acquire(
        self,
        candidates: Callable[[], Sequence[Instance]],
        pick: Callable[[Sequence[Instance]], Instance],
    ) -> Instance:
        """A slot on one of ``candidates()`` (re-read on every wake-up), chosen by ``pick``."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        chosen = self._take(candidates(), pick, now)
        if chosen is not None:  # the usual case: no queue, no waiting
            return chosen
        deadline = now + self.queue_timeout
        if self.waiting >= self.queue_limit:
            raise Saturated(
                "every instance is busy and the queue is full",
                self._retry_after(candidates(), now),
            )
        self.waiting += 1
        try:
            while True:
                offered = list(candidates())
                chosen = self._take(offered, pick, now)
                if chosen is not None:
                    return chosen
                retry_after = self._retry_after(offered, now)
                remaining = deadline - now
                if remaining <= 0:
                    raise Saturated(
                        f"no instance freed a slot within {self.queue_timeout:g}s", retry_after
                    )
                # A back-off ending frees a slot without anyone releasing one: wake then too.
                wake = min(remaining, max(0.01, retry_after)) if offered else remaining
                freed = loop.create_future()
                self._waiters.append(freed)
                try:
                    # asyncio.timeout, not wait_for, which on Python 3.11 can swallow the
                    # caller's cancellation (a client gone) when the future is done at once.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wake):
                            await freed
                finally:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(freed)
                now = loop.time()
        finally:
            self.waiting -= 1

    def _take(
        self,
        offered: Sequence[Instance],
        pick: Callable[[Sequence[Instance]], Instance],
        now: float,
    ) -> Instance | None:
        in_flight, backoff, limit = self.in_flight, self._backoff_until, self.per_instance
        usable = [
            i for i in offered if in_flight.get(i.key, 0) < limit and backoff.get(i.key, 0.0) <= now
        ]
        if not usable:
            return None
        chosen = pick(usable)
        self.in_flight[chosen.key] = self.in_flight.get(chosen.key, 0) + 1
        return chosen

    def _retry_after(self, offered: Sequence[Instance], now: float) -> float:
        """When trying again makes sense: the first back-off to end, else one second."""
        ends = [
            self._backoff_until[i.key] - now
            for i in offered
            if self._backoff_until.get(i.key, 0.0) > now
        ]
        full = any(self.in_flight.get(i.key, 0) >= self.per_instance for i in offered)
        if ends and not full:
            return max(0.0, min(ends))
        return 1.0

    def release(self, key: Key) -> None:
        """Free a slot and wake the queue (every waiter looks again, first come first)."""
        self.in_flight[key] = max(0, self.in_flight.get(key, 0) - 1)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def back_off(self, key: Key, seconds: float) -> None:
        """No new requests to ``key`` for ``seconds`` (a backend's Retry-After)."""
        if math.isfinite(seconds) and seconds > 0:
            loop = asyncio.get_running_loop()
            self._backoff_until[key] = max(
                self._backoff_until.get(key, 0.0), loop.time() + min(seconds, 300.0)
            )


def parse_retry_after(value: str | None, default: float = 1.0) -> float:
    """Seconds from a ``Retry-After`` header (delta-seconds; an HTTP date counts as default)."""
    if not value:
        return default
    try:
        seconds = float(value.strip())
    except ValueError:
        return default
    return seconds if math.isfinite(seconds) and seconds >= 0 else default
