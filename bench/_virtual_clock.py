"""An asyncio event loop on a virtual clock: waiting costs no real time.

The loop's ``time()`` is a number this module owns. When the loop has nothing ready and would
sleep until its next timer, the clock jumps to that timer instead. Everything that waits with
``asyncio.sleep``/timeouts (the health scheduler, the token governor given ``loop.time``) runs
its real code on an hour's schedule in seconds. Only in-loop I/O is allowed (an httpx
``MockTransport``): a real socket would not be waited for.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0


class _JumpingSelector(selectors.DefaultSelector):
    """Polls without blocking; a wait with a timeout becomes a jump of the clock."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout is None or timeout <= 0:
            return ready if timeout is not None else ready or super().select(None)
        self._clock.now += timeout
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose time is virtual."""

    def __init__(self) -> None:
        self._virtual = _Clock()
        super().__init__(_JumpingSelector(self._virtual))

    def time(self) -> float:
        return self._virtual.now


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh virtual-clock loop."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()
