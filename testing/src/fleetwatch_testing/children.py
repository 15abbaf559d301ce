"""A child process with pipes that is always reaped: for tests that run fleetwatch commands.

``asyncio``'s ``Process.wait()`` returns only once the child has exited *and* its pipes are
closed. A pipe nobody reads stays open: when its buffer fills, the loop stops reading and
never sees the end of file; when a grandchild (the llama-server an agent launched) inherited
it, the end of file never comes. Either way ``kill(); await wait()`` hangs, and a test that
gives up leaves an open ``_UnixReadPipeTransport`` behind, which garbage collection later
reports as a ``ResourceWarning`` inside some unrelated test.

:func:`spawned` starts the child in its own process group and, however the block ends,
stops the whole group and reads every pipe to its end, so nothing is left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from typing import Any


@contextlib.asynccontextmanager
async def spawned(
    *argv: str, grace: float = 10.0, **options: Any
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``async with spawned(cmd, ..., stdout=PIPE) as process``: on leaving, the process and
    everything it started are sent SIGTERM, SIGKILL after ``grace`` seconds, and the pipes
    are drained and closed."""
    process = await asyncio.create_subprocess_exec(*argv, start_new_session=True, **options)
    try:
        yield process
    finally:
        await reap(process, grace=grace)


async def reap(process: asyncio.subprocess.Process, *, grace: float = 10.0) -> None:
    """End ``process``'s group (politely, then firmly) and drain its pipes to the end."""
    if process.returncode is None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await _drain(process)
        except TimeoutError:
            pass
    # Whatever is left of the group (the child itself, or a grandchild holding a pipe) dies.
    _signal_group(process.pid, signal.SIGKILL)
    async with asyncio.timeout(grace):
        await _drain(process)


async def _drain(process: asyncio.subprocess.Process) -> None:
    """Read stdout and stderr to their ends, then wait for the exit: ``communicate()`` does
    exactly this, and is safe to call again after the test has called it."""
    if process.stdin is not None and not process.stdin.is_closing():
        process.stdin.close()
    await process.communicate()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
