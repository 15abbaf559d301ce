"""Requests failed during a rollout through the gateway: fast backends at scale, and real LLMs.

Fast run: three fast OpenAI-compatible backends under ``fleetwatch agent`` (launched as a
rollout launches them), a ``fleetwatch serve`` registry and a ``fleetwatch gateway``, all real
processes. Closed-loop clients (raw keep-alive connections for plain requests, plus streaming
clients) send chat completions for a steady-state window, then during a full rollout to
version 2 (``fleetwatch.rollout``, max surge 1). Real-LLM run: the same with three llama.cpp
servers (SmolLM2-135M) and the ``openai`` SDK as the client. A request fails when it is not a
200 or a stream does not end with ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from _common import BENCH_TOKEN, emit, parser, percentile, progress, registry_process
from _fleet import CHAT, MODEL, gateway
from fleetwatch.discovery import RegistryClient
from fleetwatch.registry._model import InstanceStatus
from fleetwatch.rollout import Rollout, RolloutSettings
from fleetwatch_testing import free_port
from fleetwatch_testing.hand_started import launch
from fleetwatch_testing.llama import llama_server_template
from fleetwatch_testing.llama_build import MODEL_NAME
from fleetwatch_testing.loadgen import SdkTraffic
from fleetwatch_testing.raw_http import RawHttpConnection

SERVICE = "bench"
FAST = f"{sys.executable} -m fleetwatch_testing.openai_backend --port {{port}} --model {MODEL}"


class Load:
    """Closed-loop clients; latencies and failures by phase."""

    def __init__(self, port: int, plain: int, streaming: int) -> None:
        self.port = port
        self.phase = "steady"
        self.latency: dict[str, list[float]] = {"steady": [], "rollout": []}
        self.failed: dict[str, int] = {"steady": 0, "rollout": 0}
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._plain()) for _ in range(plain)]
        self._tasks += [asyncio.create_task(self._stream()) for _ in range(streaming)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def _record(self, ok: bool, started: float) -> None:
        if ok:
            self.latency[self.phase].append((time.perf_counter() - started) * 1000)
        else:
            self.failed[self.phase] += 1

    async def _plain(self) -> None:
        conn = RawHttpConnection("127.0.0.1", self.port, timeout=30)
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                status, _ = await conn.request("POST", "/v1/chat/completions", CHAT)
                self._record(status == 200, started)
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                self._record(False, started)
                await conn.aclose()
        await conn.aclose()

    async def _stream(self) -> None:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=30) as http:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    async with http.stream("POST", "/v1/chat/completions", json=body) as reply:
                        lines = [line async for line in reply.aiter_lines() if line]
                    self._record(
                        reply.status_code == 200 and lines[-1:] == ["data: [DONE]"], started
                    )
                except httpx.HTTPError:
                    self._record(False, started)


async def wait_available(registry: str, count: int, version: str) -> None:
    async with RegistryClient(registry, token=BENCH_TOKEN) as api, asyncio.timeout(120):
        while True:
            _, found = await api.instances(SERVICE)
            up = [i for i in found if i.status is InstanceStatus.AVAILABLE and i.version == version]
            if len(up) >= count:
                return
            await asyncio.sleep(0.1)


def plan(
    registry: str, logs: Path, version: str, launch_template: str, *, kind: str, model: str | None
) -> RolloutSettings:
    return RolloutSettings(
        service=SERVICE, launch=launch_template, version=version, registry_url=registry,
        token=BENCH_TOKEN, kind=kind, model=model, ready_timeout=120, log_dir=logs,
        agent_args=("--propagation-delay", "1s"),
    )  # fmt: skip


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(percentile(ordered, 50), 2),
        "p99_ms": round(percentile(ordered, 99), 2),
    }


async def fast_run(
    registry: str, gateway_port: int, logs: Path, steady_s: float, pids: list[int]
) -> dict[str, Any]:
    old = [launch(plan(registry, logs, "1", FAST, kind="openai", model=MODEL)) for _ in range(3)]
    pids += [o.pid for o in old]
    await wait_available(registry, 3, "1")
    await asyncio.sleep(1.5)  # the gateway's view
    load = Load(gateway_port, plain=16, streaming=4)
    await asyncio.sleep(steady_s)
    load.phase = "rollout"
    report = await Rollout(
        plan(registry, logs, "2", FAST, kind="openai", model=MODEL), say=progress
    ).run()
    pids += list(report.pids.values())
    await load.stop()
    during = len(load.latency["rollout"]) + load.failed["rollout"]
    return {
        "rollout_ok": report.ok,
        "rollout_s": report.duration_s,
        "requests": during,
        "failed_requests": load.failed["rollout"],
        "steady": stats(load.latency["steady"]),
        "during_rollout": stats(load.latency["rollout"]),
        "steady_requests": len(load.latency["steady"]) + load.failed["steady"],
    }


async def llm_run(registry: str, gateway_port: int, logs: Path, pids: list[int]) -> dict[str, Any]:
    template = llama_server_template()
    old = [
        launch(plan(registry, logs, "1", template, kind="llamacpp", model=MODEL_NAME))
        for _ in range(3)
    ]
    pids += [o.pid for o in old]
    await wait_available(registry, 3, "1")
    await asyncio.sleep(1.5)
    traffic = SdkTraffic(f"http://127.0.0.1:{gateway_port}/v1", MODEL_NAME, clients=8, streaming=4)
    traffic.start()
    await asyncio.sleep(3)
    before = traffic.snapshot()
    report = await Rollout(
        plan(registry, logs, "2", template, kind="llamacpp", model=MODEL_NAME), say=progress
    ).run()
    pids += list(report.pids.values())
    after = traffic.snapshot()
    await traffic.stop()
    return {
        "rollout_ok": report.ok,
        "rollout_s": report.duration_s,
        "requests": after[0] - before[0],
        "failed_requests": after[1] - before[1],
        "reasons": traffic.reasons,
    }


def run(kind: str, steady_s: float) -> dict[str, Any]:
    registry_port, gateway_port = free_port(), free_port()
    registry = f"http://127.0.0.1:{registry_port}"
    pids: list[int] = []
    with (
        tempfile.TemporaryDirectory(prefix="fleetwatch-rollout-bench-") as folder,
        registry_process(registry_port),
        gateway(gateway_port, registry),
    ):
        try:
            if kind == "fast":
                return asyncio.run(fast_run(registry, gateway_port, Path(folder), steady_s, pids))
            return asyncio.run(llm_run(registry, gateway_port, Path(folder), pids))
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGTERM)
            time.sleep(2)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    progress("fast backends: steady state, then a full rollout under load")
    fast = run("fast", 3.0 if args.quick else 10.0)
    progress(f"  {fast}")
    progress("three llama.cpp servers: a full rollout under openai SDK traffic")
    llm = run("llm", 0)
    progress(f"  {llm}")
    emit(
        "rollout",
        {
            "mode": "quick" if args.quick else "full",
            "fast": fast,
            "llm": llm,
            "requests": fast["requests"],
            "failed_requests": fast["failed_requests"],
            "headline": {
                "fast: requests during rollout / failed": (
                    f"{fast['requests']} / {fast['failed_requests']}"
                ),
                "fast: p99 ms steady / during rollout": (
                    f"{fast['steady']['p99_ms']} / {fast['during_rollout']['p99_ms']}"
                ),
                "llama.cpp: requests during rollout / failed": (
                    f"{llm['requests']} / {llm['failed_requests']}"
                ),
            },
            "targets": {
                "0 failed (fast)": fast["failed_requests"] == 0,
                "0 failed (llama.cpp)": llm["failed_requests"] == 0,
                ">= 10,000 requests during the fast rollout": fast["requests"] >= 10_000,
            },
        },
    )


if __name__ == "__main__":
    main()
