"""Counting requests in flight, streaming responses included, until their last byte.

:class:`InFlight` wraps an ASGI app. A request counts from its first ASGI event until the
response's final body message is sent (or the app returns or fails), so a streamed reply is in
flight until it ends. A drain waits on :meth:`InFlight.wait_idle` and, past its deadline,
:meth:`InFlight.cancel_all` cancels what is left and says how many.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class InFlight:
    """ASGI middleware: ``in_flight`` now, ``served`` in all, idle waiting and cancelling."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.in_flight = 0
        self.served = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        done = False

        def finish() -> None:
            nonlocal done
            if not done:
                done = True
                self.in_flight -= 1
                self.served += 1
                if task is not None:
                    self._tasks.discard(task)
                if self.in_flight == 0:
                    self._idle.set()

        async def counted_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finish()

        self.in_flight += 1
        self._idle.clear()
        if task is not None:
            self._tasks.add(task)
        try:
            await self.app(scope, receive, counted_send)
        finally:
            finish()

    async def wait_idle(self, timeout: float) -> int:
        """Wait until nothing is in flight or ``timeout`` passes; how many are left."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            pass
        return self.in_flight

    async def cancel_all(self) -> int:
        """Cancel every request still in flight; how many were cancelled."""
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return len(tasks)
