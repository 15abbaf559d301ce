"""Rollouts against a real registry, a real gateway, and real servers under real agents."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from tests._support.rollouts import Traffic


@pytest.fixture
def reaper() -> Iterator[list[int]]:
    """Kills every detached agent a test (or its rollouts) started, however the test ends."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture
async def traffic() -> AsyncIterator[Callable[..., Traffic]]:
    """Traffic generators, all stopped after the test."""
    running: list[Traffic] = []

    def start(base_url: str, **options: Any) -> Traffic:
        load = Traffic(base_url, **options)
        load.start()
        running.append(load)
        return load

    yield start
    for load in running:
        if not load._stop.is_set():
            await load.stop()
