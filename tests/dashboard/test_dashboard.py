"""The dashboard at /ui in a real headless Chromium (Debian's), driven with Playwright."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from fleetwatch.discovery import RegistryClient
from fleetwatch.registry._model import InstanceStatus
from fleetwatch_testing import BackendProcess
from tests._support.registry_node import TOKEN, RunningRegistry
from tests._support.waiting import poll_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_PRESENT = Path(CHROMIUM).exists()
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: What a root user on a machine with no network needs for Chromium to start quietly.
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium from Debian (Playwright drives it; it downloads no browser)."""
    if not CHROMIUM_PRESENT:  # pragma: no cover - make setup installs it
        pytest.fail("chromium is missing: run `make setup` (Debian package chromium)")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield chromium
        finally:
            await chromium.close()


def status_of(page: Page, key: str) -> str:
    return f'.instance[data-key="{key}"] .status'


async def _status(api: RegistryClient) -> InstanceStatus | None:
    _, found = await api.instances("llm")
    return found[0].status if found else None


async def test_a_killed_instance_turns_unavailable_on_screen_within_2s(
    registry: RunningRegistry, api: RegistryClient, browser: Browser
) -> None:
    """The page shows the live topology (with declared dependencies); a SIGKILLed instance
    reads unavailable within 2 s, pushed by the change feed; keyboard and phone width work."""
    await asyncio.to_thread(ARTIFACTS.mkdir, exist_ok=True)
    with BackendProcess() as backend:
        await api.register(
            "llm",
            "a",
            {
                "host": "127.0.0.1",
                "port": backend.port,
                "metadata": {"depends_on": "redis,postgres"},
            },
        )
        await poll_until(lambda: _status(api), InstanceStatus.AVAILABLE, within=10)
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await page.goto(f"{registry.url}/ui/#token={TOKEN}")
        marker = page.locator(status_of(page, "llm/a"))
        await marker.filter(has_text="available").wait_for(timeout=10_000)
        assert await page.locator('[data-service="redis"]').count() == 1
        await page.locator("#connection").filter(has_text="live").wait_for(timeout=5_000)
        await page.locator("#slos").filter(has_text="No objectives configured.").wait_for()
        # Check latency trend: a sparkline per instance once a few checks were polled.
        await page.locator('.instance[data-key="llm/a"] .latency svg').wait_for(timeout=8_000)
        killed = time.monotonic()
        await asyncio.to_thread(backend.kill)
        await (
            page.locator(status_of(page, "llm/a"))
            .filter(has_text="unavailable")
            .wait_for(timeout=2_000)
        )
        shown_after = time.monotonic() - killed
        print(f"dashboard: unavailable on screen {shown_after * 1000:.0f} ms after SIGKILL")
        await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        # Keyboard: Tab reaches the instance, Enter shows its details.
        for _ in range(10):
            await page.keyboard.press("Tab")
            focused = await page.evaluate("document.activeElement?.dataset?.key || ''")
            if focused == "llm/a":
                break
        await page.keyboard.press("Enter")
        await page.locator("#details").filter(has_text="llm/a").wait_for(timeout=2_000)
        # A phone's width: no sideways scrolling.
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
        overflow = await page.evaluate(
            "document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth"
        )
        await page.close()
    assert shown_after < 2.0
    assert focused == "llm/a"
    assert overflow <= 0
    assert (await asyncio.to_thread((ARTIFACTS / "dashboard.png").stat)).st_size > 10_000


async def test_deployments_and_their_progress_show_live(
    registry: RunningRegistry, browser: Browser
) -> None:
    """A deployment written through the API appears with its revision, phase and the leading
    controller; pausing it reads "paused" on screen within 2 s, pushed by its feed."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {"profile": "fast", "version": "7", "replicas": 2}
    async with httpx.AsyncClient(base_url=registry.url, headers=headers, timeout=5) as http:
        assert (await http.put("/v1/deployments/llm", json=body)).status_code == 200
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await page.goto(f"{registry.url}/ui/#token={TOKEN}")
        row = page.locator('[data-deployment="llm"]')
        await row.filter(has_text="progressing").wait_for(timeout=10_000)
        await page.locator("#deployments .leader").filter(has_text="epoch").wait_for()
        paused_at = time.monotonic()
        reply = await http.put("/v1/deployments/llm/pause", json={"paused": True})
        assert reply.status_code == 200
        await row.locator(".phase").filter(has_text="paused").wait_for(timeout=2_000)
        shown_after = time.monotonic() - paused_at
        text = await row.inner_text()
        await page.close()
    assert shown_after < 2.0
    assert "7" in text
    assert "0/2" in text
