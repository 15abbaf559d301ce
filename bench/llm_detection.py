"""A real llama.cpp server frozen or killed: how long until discovery stops returning it,
and what the agent sidecar itself costs while idle.

Each trial starts llama-server (SmolLM2-135M) under a real ``fleetwatch agent`` process with
default check settings, registered with a ``fleetwatch serve`` registry; a DiscoveryClient
watches the service. Once it routes to the instance, the bench waits a random part of the 1 s
check interval, then SIGSTOPs the server (a hang: only checks can tell) or SIGKILLs it (the
agent owns the process and sees it die), and times how long until the client drops it.

Then one agent idles beside its server for a while: its RSS and its CPU share (user + system
time over wall time), read from /proc through psutil.

Targets: hang p99 <= 3 s, kill p99 <= 0.5 s; agent RSS < 80 MB and CPU < 1 % of a core.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time

import httpx
import psutil

from _common import BENCH_TOKEN, emit, parser, progress, registry_process, summarize_ms
from fleetwatch.discovery import DiscoveryClient
from fleetwatch_testing import free_port
from fleetwatch_testing.llama import llama_server_argv

SERVICE = "smol"


def start_agent(registry: str, instance_id: str) -> tuple[subprocess.Popen[bytes], int]:
    """``fleetwatch agent ... -- llama-server ...``; (process, agent port)."""
    llm_port, agent_port = free_port(), free_port()
    argv = [
        sys.executable, "-m", "fleetwatch", "agent",
        "--registry", registry, "--service", SERVICE, "--token", BENCH_TOKEN,
        "--upstream", f"http://127.0.0.1:{llm_port}", "--kind", "llamacpp",
        "--instance-id", instance_id, "--listen", f"127.0.0.1:{agent_port}",
        "--propagation-delay", "0s",
        "--", *llama_server_argv(llm_port),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, agent_port


async def child_pid(agent_port: int) -> int:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                body = (await client.get(f"http://127.0.0.1:{agent_port}/v1/agent")).json()
                if body.get("child_pid"):
                    return int(body["child_pid"])
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("the agent never reported its child")


async def until(predicate: object, within: float) -> None:
    assert callable(predicate)
    async with asyncio.timeout(within):
        while not await predicate():  # noqa: ASYNC110 - the client's view updates on its own
            await asyncio.sleep(0.002)


async def trial(registry: str, client: DiscoveryClient, n: int, mode: str) -> float:
    name = f"{mode}-{n}"
    proc, agent_port = start_agent(registry, name)
    try:
        pid = await child_pid(agent_port)

        async def routed() -> bool:
            return any(i.instance_id == name for i in await client.instances(SERVICE))

        await until(routed, 30)
        await asyncio.sleep(random.uniform(0, 1.0))
        started = time.perf_counter()
        psutil.Process(pid).send_signal(signal.SIGSTOP if mode == "hang" else signal.SIGKILL)

        async def dropped() -> bool:
            return not await routed()

        await until(dropped, 15)
        elapsed = time.perf_counter() - started
        if mode == "hang":
            psutil.Process(pid).send_signal(signal.SIGCONT)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 30)
    return elapsed


async def idle_cost(registry: str, client: DiscoveryClient, seconds: float) -> dict[str, float]:
    """RSS and CPU share of one agent idling beside an available server."""
    proc, _ = start_agent(registry, "idle")
    try:

        async def routed() -> bool:
            return any(i.instance_id == "idle" for i in await client.instances(SERVICE))

        await until(routed, 30)
        agent = psutil.Process(proc.pid)
        before = agent.cpu_times()
        wall_before = time.monotonic()
        await asyncio.sleep(seconds)
        after = agent.cpu_times()
        wall = time.monotonic() - wall_before
        cpu = (after.user - before.user) + (after.system - before.system)
        return {
            "agent_rss_mb": round(agent.memory_info().rss / 2**20, 1),
            "agent_cpu_share_pct": round(cpu / wall * 100, 3),
            "idle_seconds": round(wall, 1),
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 30)


async def run(trials: int, idle_s: float) -> dict[str, object]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    samples: dict[str, list[float]] = {"hang": [], "kill": []}
    with registry_process(port):
        async with DiscoveryClient(url, token=BENCH_TOKEN) as client:
            for mode in ("hang", "kill"):
                for n in range(trials):
                    elapsed = await trial(url, client, n, mode)
                    samples[mode].append(elapsed)
                    progress(f"{mode} {n + 1}/{trials}: {elapsed * 1000:.0f} ms")
            progress(f"agent idle for {idle_s:.0f} s")
            cost = await idle_cost(url, client, idle_s)
    return {
        "hang": summarize_ms(samples["hang"]),
        "kill": summarize_ms(samples["kill"]),
        "samples_ms": {k: [round(v * 1000, 1) for v in vs] for k, vs in samples.items()},
        **cost,
    }


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    trials, idle_s = (3, 10.0) if args.quick else (10, 60.0)
    result = asyncio.run(run(trials, idle_s))
    hang, kill = result["hang"], result["kill"]
    assert isinstance(hang, dict)
    assert isinstance(kill, dict)
    emit(
        "llm_detection",
        {
            "mode": "quick" if args.quick else "full",
            "trials_each": trials,
            **result,
            "headline": {
                "SIGSTOP -> out of discovery p50 ms": hang["p50_ms"],
                "SIGSTOP -> out of discovery p99 ms": hang["p99_ms"],
                "SIGKILL -> out of discovery p50 ms": kill["p50_ms"],
                "SIGKILL -> out of discovery p99 ms": kill["p99_ms"],
                "agent RSS MB (idle)": result["agent_rss_mb"],
                "agent CPU % of a core (idle)": result["agent_cpu_share_pct"],
            },
            "targets": {
                "hang p99 <= 3 s": hang["p99_ms"] <= 3000,
                "kill p99 <= 0.5 s": kill["p99_ms"] <= 500,
                "agent RSS < 80 MB": float(result["agent_rss_mb"]) < 80,  # type: ignore[arg-type]
                "agent CPU < 1 %": float(result["agent_cpu_share_pct"]) < 1,  # type: ignore[arg-type]
            },
        },
    )


if __name__ == "__main__":
    main()
