"""Running one setup step (pip, cmake) as a child process, with its output streamed."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StepResult:
    """How a step ended: its exit code (negative: the signal), its last lines, a time-out."""

    code: int
    tail: str
    timed_out: bool


def run_step(
    command: list[str],
    *,
    timeout: float,
    on_line: Callable[[str], None] = lambda _line: None,
    keep: int = 40,
) -> StepResult:
    """Run ``command``, handing each output line to ``on_line``; killed after ``timeout`` s
    even if it prints nothing (a hung download, a stuck compiler)."""
    tail: list[str] = []
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
    ) as process:
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            process.kill()

        watchdog = threading.Timer(timeout, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                tail = [*tail[-(keep - 1) :], line.rstrip()]
                on_line(line.rstrip())
            code = process.wait()
        finally:
            watchdog.cancel()
    return StepResult(code, "\n".join(tail), expired.is_set())
