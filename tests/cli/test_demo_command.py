"""``fleetwatch demo`` end to end: the main job runs, measures, and stops cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import sys

import pytest

from fleetwatch_testing import free_port, spawned

# Needs the machine to itself: three llama.cpp servers under traffic, failures counted.
# make test runs it in its one-at-a-time phase.
pytestmark = pytest.mark.serial


async def test_demo_scenario_reports_zero_failed_requests() -> None:
    """The narrated scenario runs on real servers: the killed instance leaves discovery, and
    neither the kill nor the rollout under traffic fails a request; then it stops by itself."""
    async with spawned(
        sys.executable, "-m", "fleetwatch", "demo", "--duration", "1", "--no-chaos",
        "--port", str(free_port()), "--registry-port", str(free_port()),
        "--gateway-port", str(free_port()),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200"},
    ) as process:  # fmt: skip
        async with asyncio.timeout(240):
            output, _ = await process.communicate()
    text = output.decode()
    assert process.returncode == 0, text[-3000:]
    gone = re.search(r"out of discovery after (\d+) ms; (\d+) requests since, (\d+) failed", text)
    assert gone is not None, text[-3000:]
    assert int(gone.group(2)) > 0
    assert int(gone.group(3)) == 0
    rollout = re.search(r"rollout done in [\d.]+s; (\d+) requests during it, (\d+) failed", text)
    assert rollout is not None, text[-3000:]
    assert int(rollout.group(1)) > 0
    assert int(rollout.group(2)) == 0
    assert text.rstrip().endswith("stopped")
