"""A fast fleet for the gateway benchmarks: OpenAI-compatible backends, the registry, the
gateway and HAProxy as real processes on loopback, and wrk to drive them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from _common import BENCH_TOKEN, child, registry_process
from fleetwatch.discovery import RegistryClient
from fleetwatch.registry._model import InstanceStatus
from fleetwatch_testing import free_port

SERVICE = "bench"
MODEL = "test-model"
CHAT = json.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
).encode()


def backend(
    port: int, tokens: int = 4, token_delay: float = 0.0
) -> contextlib.AbstractContextManager[Any]:
    """A fast OpenAI-compatible backend process."""
    argv = [sys.executable, "-m", "fleetwatch_testing.openai_backend", "--port", str(port)]
    return child([*argv, "--tokens", str(tokens), "--token-delay", str(token_delay)], port)


def gateway(
    port: int, registry_url: str, *, extra: Sequence[str] = (), log_level: str | None = None
) -> contextlib.AbstractContextManager[Any]:
    """``fleetwatch gateway`` for SERVICE (``extra``: more options, e.g. ``--strategy``)."""
    logging = ["--log-level", log_level] if log_level else []
    argv = [
        sys.executable, "-m", "fleetwatch", *logging, "gateway", "--service", SERVICE,
        "--registry", registry_url, "--port", str(port), "--token", BENCH_TOKEN,
        "--max-per-instance", "64", *extra,
    ]  # fmt: skip
    return child(argv, port)


@contextlib.contextmanager
def haproxy(port: int, backends: list[int]) -> Iterator[Any]:
    """HAProxy in front of ``backends``: round robin, active health checks every second."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    servers = "\n".join(
        f"    server b{n} 127.0.0.1:{p} check inter 1s fall 2 rise 2"
        for n, p in enumerate(backends)
    )
    config = (
        textwrap.dedent(
            f"""\
        global
            maxconn 4096
        defaults
            mode http
            timeout connect 2s
            timeout client 60s
            timeout server 60s
            option http-keep-alive
        frontend llm
            bind 127.0.0.1:{port}
            default_backend models
        backend models
            balance roundrobin
            option httpchk GET /health
            http-reuse always
        """
        )
        + servers
        + "\n"
    )
    with tempfile.TemporaryDirectory(prefix="fleetwatch-haproxy-") as folder:
        path = Path(folder) / "haproxy.cfg"
        path.write_text(config)
        with child([binary, "-f", str(path), "-db"], port) as process:
            yield process


async def register_all(
    registry_url: str, ports: list[int], model: str = MODEL, kind: str | None = None
) -> None:
    """Register the backends (checked every second on /health) and wait until available;
    ``kind``: the server kind, as fleetwatch's agent registers it (``llamacpp``)."""
    metadata = {"model": model, **({"kind": kind} if kind else {})}
    async with RegistryClient(registry_url, token=BENCH_TOKEN) as api:
        for n, port in enumerate(ports):
            await api.register(
                SERVICE, f"b{n}", {"host": "127.0.0.1", "port": port, "version": "1",
                                   "metadata": metadata},
            )  # fmt: skip
        async with asyncio.timeout(30):
            while True:
                _, found = await api.instances(SERVICE)
                if sum(i.status is InstanceStatus.AVAILABLE for i in found) == len(ports):
                    return
                await asyncio.sleep(0.1)


def wrk(
    port: int, seconds: float, connections: int = 32, headers: dict[str, str] | None = None
) -> dict[str, float]:
    """Closed-loop maximum: wrk POSTing the chat body (with ``headers`` too); requests/s and
    its latency percentiles."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(CHAT.decode())}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        for name, value in (headers or {}).items():
            script.write(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n")
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s", "--latency",
         "-s", script.name, f"http://127.0.0.1:{port}/v1/chat/completions"],
        capture_output=True, text=True, check=True, timeout=seconds + 30,
    ).stdout  # fmt: skip
    Path(script.name).unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": round(rps, 1), "non_2xx": int(errors.group(1)) if errors else 0}


@contextlib.contextmanager
def fast_fleet(
    count: int = 3, *, tokens: int = 4, token_delay: float = 0.0
) -> Iterator[tuple[str, list[int], list[int]]]:
    """The registry and ``count`` registered backends; (registry URL, ports, pids)."""
    registry_port = free_port()
    url = f"http://127.0.0.1:{registry_port}"
    ports = [free_port() for _ in range(count)]
    with contextlib.ExitStack() as stack:
        stack.enter_context(registry_process(registry_port))
        pids = [stack.enter_context(backend(port, tokens, token_delay)).pid for port in ports]
        asyncio.run(register_all(url, ports))
        yield url, ports, pids
