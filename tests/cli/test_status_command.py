"""`fleetwatch status` against a running registry: table, JSON, unreachable."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys

from fleetwatch.discovery import RegistryClient
from fleetwatch_testing import HttpBackend, free_port, spawned
from tests._support.registry_node import TOKEN, RunningRegistry


async def _status(*args: str) -> tuple[int, str, str]:
    async with spawned(
        sys.executable, "-m", "fleetwatch", "status", *args,
        env={**os.environ, "FLEETWATCH_TOKEN": TOKEN, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    ) as proc:  # fmt: skip
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_table_and_json(
    registry: RunningRegistry, api: RegistryClient, backend: HttpBackend
) -> None:
    """The table lists every instance with its status; --json gives the same for scripts."""
    await api.register("llm", "a", {"host": "127.0.0.1", "port": backend.port})
    await api.register("llm", "b", {"host": "127.0.0.1", "port": free_port()})
    code, out, _ = await _status("--registry", registry.url)
    assert code == 0
    # Each instance's own row: service, id, address and status side by side in the table.
    row_a = rf"^│ llm +│ a +│ http://127\.0\.0\.1:{backend.port} +│ (starting|available) +│"
    row_b = r"^│ llm +│ b +│ http://127\.0\.0\.1:\d+ +│ (starting|unavailable) +│"
    assert re.search(row_a, out, re.MULTILINE), out
    assert re.search(row_b, out, re.MULTILINE), out
    code, out, _ = await _status("--registry", registry.url, "--json")
    document = json.loads(out)
    assert code == 0
    assert {i["instance_id"] for i in document["services"]["llm"]} == {"a", "b"}
    assert document["index"] >= 2


async def test_unreachable_registry_exits_69() -> None:
    """No registry at that address: exit 69 (EX_UNAVAILABLE) with the reason."""
    code, _, err = await _status("--registry", f"http://127.0.0.1:{free_port()}")
    assert code == 69
    assert "unreachable" in err
