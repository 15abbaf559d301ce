"""SIGKILL one of three llama.cpp servers under streaming load, through each router.

Six clients stream greedy chat completions (64 tokens, temperature 0) in a closed loop
through the router for a few seconds; a third of the way in, the first server is SIGKILLed.
Each stream is classed as the client sees it: ok (every chunk, then ``[DONE]``, no error
event), failed before its first byte (an error status, a refused or reset connection, no
content), or cut (content, then an error event, a reset, or an end without ``[DONE]``).
For fleetwatch, a stream that began on the killed server and ended ok was recovered; its
longest pause between two chunks is the seam as the client felt it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx

from _common import percentile, progress, registry_process
from _fleet import gateway, register_all
from _llama import RunningLlama, http_json, llama_fleet
from _peers import sglang_router, vllm_router
from fleetwatch_testing import free_port
from fleetwatch_testing.llama_build import MODEL_NAME

CLIENTS = 6
MAX_TOKENS = 64
TOPICS = [
    "the history of Rome", "how bread is made", "the water cycle", "why the sky is blue",
    "the life of bees", "how a bicycle works", "the moon", "volcanoes", "chess openings",
    "the printing press", "coral reefs", "how to plant a tree",
]  # fmt: skip
#: The killed server's instance id in fleetwatch's registry (register_all names them b0...).
KILLED_ID = "b0"


@dataclass
class Tally:
    """What the clients saw in one trial."""

    sent: int = 0
    ok: int = 0
    failed_before_first_byte: int = 0
    cut: int = 0
    #: fleetwatch: streams that began on the killed server and still ended ok.
    recovered_seen: int = 0
    seams_s: list[float] = field(default_factory=list)


async def _one(http: httpx.AsyncClient, topic: str, tally: Tally, kill_at: list[float]) -> None:
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": f"Tell me about {topic}."}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
    }
    tally.sent += 1
    content, done, error, gaps = False, False, False, [0.0]
    started = time.monotonic()
    serving = None
    try:
        async with http.stream("POST", "/v1/chat/completions", json=body) as reply:
            serving = reply.headers.get("x-fleetwatch-instance")
            if reply.status_code != 200:
                tally.failed_before_first_byte += 1
                return
            last = time.monotonic()
            async for line in reply.aiter_lines():
                if not line.startswith("data: "):
                    continue
                now = time.monotonic()
                if content:
                    gaps.append(now - last)
                last = now
                if line == "data: [DONE]":
                    done = True
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    error = True
                elif event.get("choices") and event["choices"][0].get("delta", {}).get("content"):
                    content = True
    except (httpx.HTTPError, ValueError):
        pass
    if not content:
        tally.failed_before_first_byte += 1
    elif error or not done:
        tally.cut += 1
    else:
        tally.ok += 1
        # Begun on the killed server before the kill, ended after it: continued elsewhere.
        spanned = bool(kill_at) and started < kill_at[0] < time.monotonic()
        if serving == KILLED_ID and spanned:
            tally.recovered_seen += 1
            tally.seams_s.append(max(gaps))


async def _client(
    url: str, n: int, stop: asyncio.Event, tally: Tally, kill_at: list[float]
) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        k = n
        while not stop.is_set():
            await _one(http, TOPICS[k % len(TOPICS)], tally, kill_at)
            k += CLIENTS


async def trial(url: str, victim: RunningLlama, seconds: float) -> Tally:
    """The clients against ``url`` for ``seconds``; ``victim`` SIGKILLed a third in."""
    stop, tally, kill_at = asyncio.Event(), Tally(), []
    clients = [asyncio.create_task(_client(url, n, stop, tally, kill_at)) for n in range(CLIENTS)]
    await asyncio.sleep(seconds / 3)
    victim.process.send_signal(signal.SIGKILL)
    kill_at.append(time.monotonic())
    await asyncio.sleep(seconds * 2 / 3)
    stop.set()
    async with asyncio.timeout(180):
        await asyncio.gather(*clients)
    return tally


@contextlib.contextmanager
def fleetwatch_router(servers: list[RunningLlama], strategy: str | None = None) -> Iterator[str]:
    """A registry with the servers registered as llama.cpp, and ``fleetwatch gateway``
    (its default strategy, or ``strategy``)."""
    registry_port, gateway_port = free_port(), free_port()
    registry_url = f"http://127.0.0.1:{registry_port}"
    ports = [s.port for s in servers]
    extra = ["--strategy", strategy] if strategy else []
    with registry_process(registry_port, log_level="warning"):
        asyncio.run(register_all(registry_url, ports, MODEL_NAME, kind="llamacpp"))
        with gateway(gateway_port, registry_url, extra=extra, log_level="warning"):
            yield f"http://127.0.0.1:{gateway_port}"


@contextlib.contextmanager
def peer(start: Callable[..., Any], servers: list[RunningLlama]) -> Iterator[str]:
    with start([s.url for s in servers]) as running:
        yield running.url


ROUTERS: dict[str, tuple[Callable[[list[RunningLlama]], Any], str | None]] = {
    "fleetwatch gateway (default: prefix)": (fleetwatch_router, None),
    # The peers' policy, so that the rows differ by what happens at the kill, not by routing.
    "fleetwatch gateway round-robin": (partial(fleetwatch_router, strategy="round-robin"), None),
    "sglang-router round_robin": (partial(peer, partial(sglang_router, policy="round_robin")),
                                  "sglang-router"),
    "vllm-router round_robin": (partial(peer, partial(vllm_router, policy="round_robin")),
                                "vllm-router"),
}  # fmt: skip


def gateway_recoveries(url: str) -> dict[str, Any]:
    """fleetwatch's own count of recoveries and its seam latency."""
    stats = http_json(f"{url}/v1/gateway/stats", timeout=5)
    return {
        "recoveries": stats.get("recoveries", {}),
        "seam_p50_s": stats.get("seam_p50_s"),
        "seam_p99_s": stats.get("seam_p99_s"),
    }


def run_router(name: str, trials: int, seconds: float) -> dict[str, Any]:
    """``trials`` trials through router ``name``, each on fresh servers."""
    start, _ = ROUTERS[name]
    results = []
    for n in range(trials):
        with llama_fleet(3, parallel=2, context=2048) as servers, start(servers) as url:
            tally = asyncio.run(trial(url, servers[0], seconds))
            row: dict[str, Any] = {k: v for k, v in vars(tally).items() if k != "seams_s"}
            row["seams_ms"] = [round(s * 1000, 1) for s in tally.seams_s]
            if name.startswith("fleetwatch"):
                row["gateway"] = gateway_recoveries(url)
            results.append(row)
            progress(f"  {name} trial {n + 1}/{trials}: {json.dumps(row)}")
    seams = sorted(s for r in results for s in r["seams_ms"])
    recovered = sum(r.get("gateway", {}).get("recoveries", {}).get("recovered", 0) for r in results)
    return {
        "router": name,
        "trials": results,
        "requests": sum(r["sent"] for r in results),
        "failed_before_first_byte": sum(r["failed_before_first_byte"] for r in results),
        "streams_cut": sum(r["cut"] for r in results),
        "streams_recovered": recovered if name.startswith("fleetwatch") else 0,
        "seam_ms": {
            "p50": round(percentile(seams, 50), 1) if seams else None,
            "p99": round(percentile(seams, 99), 1) if seams else None,
        },
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The side-by-side markdown table."""
    lines = [
        "| router | requests | failed before first byte | streams cut | streams recovered "
        "| seam p50 / p99 (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        seam = row["seam_ms"]
        lines.append(
            f"| {row['router']} | {row['requests']} | {row['failed_before_first_byte']} "
            f"| {row['streams_cut']} | {row['streams_recovered']} "
            f"| {seam['p50'] or '-'} / {seam['p99'] or '-'} |"
        )
    return "\n".join(lines)
