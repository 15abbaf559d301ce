"""The upstream server as the agent's child: launched, signalled, stopped, its death noticed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import signal
from collections.abc import Sequence

from fleetwatch.errors import FleetwatchError
from fleetwatch.security._auth import TOKEN_ENV

log = logging.getLogger("fleetwatch.agent")

#: Signals the agent passes on to its child as they come (SIGTERM/SIGINT start a drain instead).
FORWARDED_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def _primary_group(user: str) -> int:
    return pwd.getpwnam(user).pw_gid


class ChildProcess:
    """One launched command. ``exited`` resolves with its exit code the moment it dies."""

    def __init__(self, command: Sequence[str], *, user: str | None = None) -> None:
        """``user``: run the command as this user (the agent must be root to switch)."""
        if not command:
            raise ValueError("the command to launch is empty")
        self.command = tuple(command)
        self.user = user
        self._process: asyncio.subprocess.Process | None = None
        self._forwarding: list[signal.Signals] = []
        self.exited: asyncio.Future[int] | None = None

    @property
    def started(self) -> bool:
        return self._process is not None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self) -> None:
        """Launch the command (its output goes where the agent's goes)."""
        try:
            # The server never needs the registry token: it is the agent's, not the server's.
            env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
            if self.user is None:
                self._process = await asyncio.create_subprocess_exec(*self.command, env=env)
            else:
                # Groups too: the user's own, not the agent's (root's) supplementary groups.
                self._process = await asyncio.create_subprocess_exec(
                    *self.command,
                    env=env,
                    user=self.user,
                    group=_primary_group(self.user),
                    extra_groups=[],
                )
        except (OSError, KeyError, ValueError) as exc:
            as_user = f" as user {self.user!r}" if self.user else ""
            raise FleetwatchError(f"cannot launch {self.command[0]!r}{as_user}: {exc}") from exc
        loop = asyncio.get_running_loop()
        self.exited = loop.create_future()
        waiter = asyncio.create_task(self._process.wait(), name="fleetwatch.agent.child-wait")
        waiter.add_done_callback(self._on_exit)
        self._waiter = waiter
        for sig in FORWARDED_SIGNALS:
            loop.add_signal_handler(sig, self.send, sig)
            self._forwarding.append(sig)
        log.info("agent.child_started pid=%s command=%s", self._process.pid, " ".join(self.command))

    def _on_exit(self, task: asyncio.Task[int]) -> None:
        if self.exited is not None and not self.exited.done():
            if task.cancelled():
                self.exited.cancel()
            elif task.exception() is not None:
                self.exited.set_exception(task.exception())  # type: ignore[arg-type]
            else:
                self.exited.set_result(task.result())

    @property
    def running(self) -> bool:
        return self.exited is not None and not self.exited.done()

    def send(self, sig: signal.Signals) -> None:
        """Pass a signal on (ignored once the child has gone)."""
        if self._process is not None and self.running:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(sig)

    async def stop(self, timeout: float) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code (None if never started)."""
        self._stop_forwarding()
        if self._process is None or self.exited is None:
            return None
        if self.running:
            self.send(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(self.exited)
            except TimeoutError:
                log.warning("agent.child_killed: no exit %ss after SIGTERM", timeout)
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
        return await self.exited

    def _stop_forwarding(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._forwarding:
            loop.remove_signal_handler(sig)
        self._forwarding = []
