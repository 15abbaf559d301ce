"""Real llama.cpp servers (SmolLM2-135M) on loopback, and recorded replies of other families."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetwatch.sandbox.llama import LlamaServer

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_text(kind: str, name: str) -> str:
    """A recorded reply (see fixtures/<kind>/SOURCE.md for where it came from)."""
    return (FIXTURES / kind / name).read_text()


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """One llama-server for the session, for tests that leave it as they found it."""
    with LlamaServer() as server:
        yield server


@pytest.fixture
def llama_servers() -> Iterator[Callable[[int], list[LlamaServer]]]:
    """Start N fresh llama-servers on free ports (ready); all stopped after the test."""
    started: list[LlamaServer] = []

    def start(count: int, *, wait_ready: bool = True) -> list[LlamaServer]:
        servers = [LlamaServer() for _ in range(count)]
        started.extend(servers)
        for server in servers:
            server.start(wait_ready=False)
        if wait_ready:
            for server in servers:
                server.start_wait()
        return servers

    try:
        yield start  # type: ignore[misc]
    finally:
        for server in started:
            server.close()


@pytest.fixture
def own_llama(llama_servers: Callable[[int], list[LlamaServer]]) -> LlamaServer:
    """A llama-server of this test's own, to pause or kill."""
    return llama_servers(1)[0]


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
