"""A change counter that waiters block on: what each in-memory store's blocking reads use."""

from __future__ import annotations

import asyncio


class ChangeIndex:
    """A count of changes; :meth:`wait_past` returns once it moves past what a reader saw."""

    def __init__(self) -> None:
        self.value = 0
        self._changed = asyncio.Event()

    def bump(self) -> int:
        """Count one change and wake every waiter; the new value."""
        self.value += 1
        self._changed.set()
        self._changed = asyncio.Event()
        return self.value

    async def wait_past(self, index: int, within: float) -> int:
        """The value once it differs from ``index`` (at once if it already does: newer, or
        older after a restart, and the reader resyncs), or after ``within`` seconds."""
        if self.value != index:
            return self.value
        try:
            async with asyncio.timeout(within):
                while self.value <= index:
                    await self._changed.wait()
        except TimeoutError:
            pass
        return self.value
