"""Recorded replies of other server families, and a throttle that makes a slow machine."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

#: Replies recorded from real servers, one folder per server family.
FIXTURES = Path(__file__).parent.parent / "llm" / "fixtures"


def fixture_text(kind: str, name: str) -> str:
    """A recorded reply (see fixtures/<kind>/SOURCE.md for where it came from)."""
    return (FIXTURES / kind / name).read_text()


class Throttle:
    """Runs a process at ``duty`` of real time by SIGSTOP/SIGCONT in 100 ms periods.

    llama-server loads SmolLM2 in about 0.25 s, too fast to watch its loading phase; throttled
    to 5 % it takes several seconds, while its HTTP threads still answer (slowly) with the real
    503 "Loading model". Nothing is mocked: this is a slow machine, made on purpose.
    """

    def __init__(self, pid: int, duty: float = 0.05, period: float = 0.1) -> None:
        self.pid = pid
        self.duty = duty
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Throttle:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Stop throttling and leave the process running."""
        self._stop.set()
        self._thread.join(timeout=2)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGCONT)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                os.kill(self.pid, signal.SIGSTOP)
                time.sleep(self.period * (1 - self.duty))
                os.kill(self.pid, signal.SIGCONT)
            except ProcessLookupError:
                return
            time.sleep(self.period * self.duty)
