"""The one pattern every I/O object follows: ``async with`` starts it, leaving closes it."""

from __future__ import annotations

import enum
import functools
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self


class ResourceState(enum.Enum):
    """Where an :class:`AsyncResource` is in its life (as httpx's ``ClientState``)."""

    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class AsyncResource:
    """Base of fleetwatch's I/O objects: ``__aenter__`` awaits :meth:`start`, ``__aexit__``
    awaits :meth:`aclose`. Subclasses implement ``aclose`` and, when entering has work to do
    (bind a socket, start background tasks), ``start``.

    Its :attr:`resource_state` is explicit: entering an open one again (which would start every
    background loop twice) or one already closed raises a ``RuntimeError`` saying so."""

    _state: ResourceState = ResourceState.UNOPENED

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        close = cls.__dict__.get("aclose")
        if close is not None:  # every aclose, called directly or on leaving, ends the life
            # setattr: a method assigned on a class is beyond what mypy checks.
            setattr(cls, "aclose", _marks_closed(close))  # noqa: B010

    @property
    def resource_state(self) -> ResourceState:
        """Unopened, open (entered) or closed."""
        return self._state

    async def start(self) -> None:
        """Acquire what the object needs (nothing by default)."""

    async def aclose(self) -> None:
        """Release everything the object owns."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        name = type(self).__name__
        if self._state is ResourceState.OPEN:
            raise RuntimeError(f"this {name} is already open: enter it with `async with` once")
        if self._state is ResourceState.CLOSED:
            raise RuntimeError(f"this {name} was closed and cannot be opened again: make a new one")
        await self.start()
        self._state = ResourceState.OPEN
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _marks_closed(
    close: Callable[[Any], Awaitable[None]],
) -> Callable[[Any], Awaitable[None]]:
    @functools.wraps(close)
    async def aclose(self: AsyncResource) -> None:
        self._state = ResourceState.CLOSED
        await close(self)

    return aclose
