"""Run inside a venv holding fleetwatch's core only (no extras): the registry on the memory
store, self-registration, discovery and the health library, through public names only.

Prints one JSON line with what it saw; ``tests/packaging/test_wheel.py`` runs it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys

import httpx

from fleetwatch.discovery import DiscoveryClient, registration
from fleetwatch.health import CheckSettings, HealthScheduler
from fleetwatch.health.checks import TcpCheck

TOKEN = "core-scenario-token"
OPTIONAL = ("redis", "asyncpg", "httptools", "pynvml", "openai", "aiohttp", "fleetwatch_testing")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def scenario(port: int) -> dict[str, object]:
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=1) as client:
        for _ in range(300):
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    async with (
        registration("llm", "core-1", host="127.0.0.1", port=port, registry_url=url, token=TOKEN),
        DiscoveryClient(url, token=TOKEN) as discovery,
    ):
        found = [i.instance_id for i in await discovery.instances("llm", passing=False, fresh=True)]
    check = TcpCheck("127.0.0.1", port, timeout=2)
    scheduler = HealthScheduler([(check, CheckSettings(name="registry-port", rise=1))])
    states = await scheduler.run_all()
    await scheduler.aclose()
    result = states["registry-port"].result
    return {"discovered": found, "health": result.status.value if result else "none"}


def main() -> None:
    port = free_port()
    env = {**os.environ, "FLEETWATCH_TOKEN": TOKEN}
    server = subprocess.Popen(
        [sys.executable, "-m", "fleetwatch", "serve", "--port", str(port), "--store", "memory"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        seen = asyncio.run(scenario(port))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
    seen["importable"] = [name for name in OPTIONAL if importlib.util.find_spec(name)]
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
