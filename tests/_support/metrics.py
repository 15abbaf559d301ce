"""Reading /metrics pages: fetch one, and have Prometheus' own linter check it."""

from __future__ import annotations

import asyncio
import shutil

import httpx
import pytest

from fleetwatch_testing import spawned

PROMTOOL = shutil.which("promtool")


async def promtool_accepts(text: str) -> str:
    """Run ``promtool check metrics`` on a page; its complaints (empty when clean)."""
    if PROMTOOL is None:  # pragma: no cover - make setup installs Debian's prometheus
        pytest.fail("promtool is missing: run `make setup` (Debian package prometheus)")
    async with spawned(
        PROMTOOL, "check", "metrics",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    ) as process, asyncio.timeout(30):  # fmt: skip
        out, _ = await process.communicate(text.encode())
    assert process.returncode == 0, out.decode()
    return out.decode()


async def scrape(url: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        reply = await client.get(f"{url}/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    return reply.text
