"""Background loops that cannot die silently: each owner runs its loops under one supervisor.

A loop that raises is logged with its name (``task.crashed OWNER.LOOP``) and counted in every
server's ``/metrics`` (``fleetwatch_task_crashes_total{task}``). Then its policy decides, per
loop and on purpose: :attr:`Policy.RESTART` runs it again after a backoff that doubles up to a
cap (reset once a run has lasted a minute), and :attr:`Policy.FAIL` fails the owner, which is
told through ``on_fail`` and reads as ``failed``. ``aclose()`` cancels every loop, waits for
them, and logs what it cancelled. It is the structured-concurrency guarantee of a task group
(nothing outlives its owner, nothing fails unseen), kept for owners that open in
``__aenter__`` and close in ``aclose``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from enum import StrEnum
from typing import Any

log = logging.getLogger("fleetwatch.tasks")

#: Crashes by task name, in this process: what ``fleetwatch_task_crashes_total`` exports.
CRASHES: Counter[str] = Counter()

#: A restarted loop waits this long first, doubling at each crash in a row up to the cap.
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 30.0
#: A run that lasted this long was healthy: the next crash starts the backoff afresh.
HEALTHY_RUN_S = 60.0


class Policy(StrEnum):
    """What a crash of a loop does."""

    #: Log, count, and run the loop again after the backoff.
    RESTART = "restart"
    #: Log, count, and fail the owner: its other loops are cancelled, ``on_fail`` is called.
    FAIL = "fail"


class Supervisor:
    """The loops of one owner (``owner`` names it in logs and metrics)."""

    def __init__(
        self,
        owner: str,
        *,
        detail: str = "",
        on_fail: Callable[[str, BaseException], None] | None = None,
        first_backoff: float = FIRST_BACKOFF_S,
        max_backoff: float = MAX_BACKOFF_S,
    ) -> None:
        """``owner`` names the kind of owner (metrics labels stay bounded); ``detail`` says
        which one in the logs (an instance, a notifier)."""
        self.owner = owner
        self.detail = detail
        self._on_fail = on_fail
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: The crash that failed the owner (a loop with Policy.FAIL), if any.
        self.failure: BaseException | None = None
        self.failed_task: str | None = None
        self._closing = False
        self._stopping: set[asyncio.Task[None]] = set()

    @property
    def failed(self) -> bool:
        return self.failure is not None

    @property
    def running(self) -> list[str]:
        """Names of the loops still running."""
        return [name for name, task in self._tasks.items() if not task.done()]

    def start(
        self,
        name: str,
        loop: Callable[[], Coroutine[Any, Any, None]],
        *,
        policy: Policy = Policy.RESTART,
        max_backoff: float | None = None,
    ) -> None:
        """Run ``loop()`` (called again for each restart) as ``OWNER.NAME``; ``max_backoff``
        caps this loop's wait before a restart (a heartbeat must not pause for long)."""
        if self._closing:
            raise RuntimeError(f"{self.owner} is closing: no new loop {name!r}")
        if name in self._tasks and not self._tasks[name].done():
            raise RuntimeError(f"{self.owner} already runs a loop named {name!r}")
        task_name = f"{self.owner}.{name}"
        cap = self._max_backoff if max_backoff is None else max_backoff
        self._tasks[name] = asyncio.create_task(
            self._supervise(task_name, loop, policy, cap), name=f"fleetwatch.{task_name}"
        )

    async def _supervise(
        self,
        name: str,
        loop: Callable[[], Coroutine[Any, Any, None]],
        policy: Policy,
        max_backoff: float,
    ) -> None:
        clock = asyncio.get_running_loop().time
        backoff = min(self._first_backoff, max_backoff)
        where = f" ({self.detail})" if self.detail else ""
        while True:
            started = clock()
            try:
                await loop()
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # cancelled from outside: the owner is closing
                # A CancelledError raised inside the loop (something it awaited was cancelled)
                # is no stop request: it is a crash like any other.
                crash: Exception = RuntimeError(f"cancelled from inside: {exc!r}")
            except Exception as exc:
                crash = exc
            else:
                # A loop that returns has finished its work (a stop was asked): not a crash.
                log.debug("task.finished %s%s", name, where)
                return
            CRASHES[name] += 1
            if policy is Policy.FAIL:
                log.error(
                    "task.crashed %s%s (policy fail): the owner fails", name, where, exc_info=crash
                )
                self._fail(name, crash)
                return
            if clock() - started >= HEALTHY_RUN_S:
                backoff = min(self._first_backoff, max_backoff)
            log.error(
                "task.crashed %s%s (policy restart in %.1fs)", name, where, backoff, exc_info=crash
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)

    def _fail(self, name: str, exc: BaseException) -> None:
        if self.failure is None:
            self.failure, self.failed_task = exc, name
        for other, task in self._tasks.items():
            if f"{self.owner}.{other}" != name:
                task.cancel()
        if self._on_fail is not None:
            try:
                self._on_fail(name, exc)
            except Exception:  # the owner's hook must not hide the crash it is told of
                log.exception("task.on_fail_failed %s", name)

    def is_running(self, name: str) -> bool:
        task = self._tasks.get(name)
        return task is not None and not task.done()

    def cancel(self, name: str) -> None:
        """Stop one loop now (it is awaited by :meth:`aclose`)."""
        task = self._tasks.pop(name, None)
        if task is not None and not task.done():
            task.cancel()
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def aclose(self) -> list[str]:
        """Cancel every loop, wait for them, and log (and return) the names cancelled."""
        self._closing = True
        cancelled = [name for name, task in self._tasks.items() if not task.done()]
        for name in cancelled:
            self._tasks[name].cancel()
        # gather, not a suppressed await: a cancellation of the caller itself goes on up.
        await asyncio.gather(*self._tasks.values(), *self._stopping, return_exceptions=True)
        if cancelled:
            where = f" ({self.detail})" if self.detail else ""
            log.info("task.cancelled %s%s: %s", self.owner, where, ", ".join(cancelled))
        self._tasks.clear()
        self._closing = False  # an owner that starts again (a scheduler) may use it again
        return cancelled
