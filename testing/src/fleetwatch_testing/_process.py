"""A child server process with a log file, stopped politely and then firmly."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from fleetwatch_testing.ports import wait_until


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


class LocalServer:
    """Base of the sandbox servers: a child process with its data in a temporary directory.

    Subclasses implement ``start()``. ``stop()``/``start()`` keep the port and the data;
    ``kill()`` crashes the process; ``close()`` stops it and deletes the directory; ``with``
    starts it and closes it.
    """

    stop_signal: signal.Signals = signal.SIGTERM
    stop_grace: float = 10.0

    def __init__(self, *, prefix: str, log_name: str) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix=prefix))
        self._process = ServerProcess(self._dir / log_name)

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self._process.pid

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it is ready."""
        raise NotImplementedError

    def _await_ready(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until ``ready()``; on timeout or early exit, raise with the log's last lines."""
        wait_until(
            ready,
            timeout=timeout,
            what=what,
            alive=self._process.running,
            log=str(self._process.log_path),
        )

    def stop(self) -> None:
        """Stop the server politely, then firmly after ``stop_grace`` seconds."""
        self._process.stop(sig=self.stop_signal, grace=self.stop_grace)

    def kill(self) -> None:
        """Crash the server with SIGKILL."""
        self._process.stop(sig=signal.SIGKILL)

    def signal(self, sig: signal.Signals) -> None:
        """Send a signal without waiting for anything."""
        self._process.send(sig)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): it keeps its sockets but answers nothing, like a hang."""
        self._process.send(signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a paused server (SIGCONT)."""
        self._process.send(signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and delete its data."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
