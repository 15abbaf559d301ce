"""Tokens never reach the logs, even at debug level, whether right or wrong."""

from __future__ import annotations

import asyncio
import os
import sys

import httpx

from fleetwatch_testing import free_port, spawned
from tests._support.waiting import poll_until

SECRET = "registry-secret-7f3a9c"
WRONG = "presented-wrong-secret-51be2d"


async def test_serve_logs_no_token_at_debug_level() -> None:
    """A real `fleetwatch serve` at debug level, JSON logs: a registration with the right token,
    refused writes with a wrong one; neither secret appears in anything it printed."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with spawned(
        sys.executable, "-m", "fleetwatch", "--log-level", "debug", "--log-format", "json",
        "serve", "--port", str(port),
        env={**os.environ, "FLEETWATCH_TOKEN": SECRET},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    ) as proc:  # fmt: skip
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:

            async def ready() -> int:
                try:
                    return (await client.get("/readyz")).status_code
                except httpx.TransportError:
                    return 0

            await poll_until(ready, 200, within=30)
            good = {"Authorization": f"Bearer {SECRET}"}
            bad = {"Authorization": f"Bearer {WRONG}"}
            body = {"host": "127.0.0.1", "port": 9}
            registered = await client.put("/v1/services/llm/instances/a", json=body, headers=good)
            refused = await client.put("/v1/services/llm/instances/b", json=body, headers=bad)
            listed = await client.get("/v1/services/llm/instances", headers=bad)
        proc.terminate()
        async with asyncio.timeout(20):
            out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    assert registered.status_code == 200
    assert (refused.status_code, listed.status_code) == (401, 401)
    assert '"level": "debug"' in text or '"level":"debug"' in text  # debug really was on
    assert SECRET not in text
    assert WRONG not in text
