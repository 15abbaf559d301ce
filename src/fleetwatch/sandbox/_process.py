"""A child server process with a log file, stopped politely and then firmly."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import IO


class ServerProcess:
    """One child process; ``stop()`` sends SIGTERM, then SIGKILL after ``grace`` seconds."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id while running."""
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def spawn(self, argv: list[str], *, user: str | None = None, cwd: str | None = None) -> None:
        """Start ``argv`` (as ``user`` when given), appending its output to the log."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            user=user,
            cwd=cwd,
            start_new_session=True,
        )

    def send(self, sig: signal.Signals) -> None:
        """Send a signal (SIGSTOP/SIGCONT to freeze and thaw, SIGKILL to crash)."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, sig)

    def stop(self, *, grace: float = 10.0, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop the process and wait for it; escalate to SIGKILL after ``grace``."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
                proc.send_signal(sig)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=grace)
        if self._log is not None:
            self._log.close()
            self._log = None
