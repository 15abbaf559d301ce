"""Cancellation that libraries may lose, made to stick.

On Python 3.11, ``asyncio.wait_for`` drops a cancel that arrives just as the awaited operation
finishes: it returns the result instead of raising ``CancelledError`` (fixed in 3.12). fleetwatch
itself never calls it (ruff bans it under ``src/``), but redis-py wraps every socket write in it,
so a task cancelled during a Redis command could carry on as if nothing had happened: a loop
that never stops, a shutdown that waits forever. The task still counts the request, though
(``Task.cancelling()``), and that is what :func:`keep_cancellation` checks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def keep_cancellation() -> Iterator[None]:
    """Raise ``CancelledError`` at the end of the block if the task was cancelled inside it and
    the cancel was swallowed on the way: whether the block then ended normally or with an error
    (the next command failing, say, as Redis went away), the caller sees the cancellation, not
    a result or an error its retry loop would swallow in turn."""
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    try:
        yield
    except Exception as exc:
        if task is not None and task.cancelling() > before:
            raise asyncio.CancelledError from exc
        raise
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError
