"""The one pattern every I/O object follows: ``async with`` starts it, leaving closes it."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncResource:
    """Base of fleetwatch's I/O objects: ``__aenter__`` awaits :meth:`start`, ``__aexit__``
    awaits :meth:`aclose`. Subclasses implement ``aclose`` and, when entering has work to do
    (bind a socket, start background tasks), ``start``."""

    async def start(self) -> None:
        """Acquire what the object needs (nothing by default)."""

    async def aclose(self) -> None:
        """Release everything the object owns."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
