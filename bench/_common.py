"""Helpers the benchmark scripts share: argument parsing, progress output, the JSON last line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from fleetwatch_testing.ports import port_open, wait_until
from fleetwatch_testing.raw_http import RawHttpConnection

#: The token the benchmarks' registry processes accept.
BENCH_TOKEN = "bench-token"  # noqa: S105 - a throwaway token for local benchmarks


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the common ``--quick`` flag."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--quick",
        action="store_true",
        help="a run under a minute that measures the same thing on less data",
    )
    return p


def progress(message: str) -> None:
    """Progress goes to stderr, so stdout's last line stays the JSON result."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def emit(name: str, result: dict[str, Any]) -> None:
    """Print the result as one JSON object on the last line of stdout."""
    result = {
        "bench": name,
        "machine": {
            "python": platform.python_version(),
            "cpus": __import__("os").cpu_count(),
            "platform": platform.platform(),
        },
        **result,
    }
    print(json.dumps(result, sort_keys=False))


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of already sorted values, nearest-rank."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100.0 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


@contextlib.contextmanager
def child(
    argv: list[str], port: int, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process, ready once ``port`` accepts connections, stopped with SIGTERM."""
    proc = subprocess.Popen(argv, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    try:
        wait_until(lambda: port_open("127.0.0.1", port), timeout=30, what=" ".join(argv[:4]))
        yield proc
    finally:
        terminate(proc, grace=20)


def terminate(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it is still running after ``grace`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def registry_process(
    port: int, store: str = "memory", *, log_level: str = "info"
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """``fleetwatch serve`` on ``port`` with ``store``, accepting ``BENCH_TOKEN``."""
    argv = [sys.executable, "-m", "fleetwatch", "--log-level", log_level, "serve"]
    argv += ["--port", str(port), "--store", store]
    return child(argv, port, {"FLEETWATCH_TOKEN": BENCH_TOKEN})


def summarize_ms(values_s: list[float]) -> dict[str, float]:
    """p50/p90/p99/max of durations given in seconds, reported in milliseconds."""
    ordered = sorted(values_s)
    return {
        "p50_ms": round(percentile(ordered, 50) * 1000, 3),
        "p90_ms": round(percentile(ordered, 90) * 1000, 3),
        "p99_ms": round(percentile(ordered, 99) * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3) if ordered else float("nan"),
    }


#: Connections an open-loop run may hold at once.
MAX_CONNECTIONS = 256


async def open_loop(
    port: int,
    rate: float,
    duration: float,
    *,
    method: str = "GET",
    path: str = "/health",
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Send requests at ``rate`` per second for ``duration`` seconds (open loop: latency is
    measured from each request's intended send time); latencies in ms."""
    idle: list[RawHttpConnection] = []
    opened = 0
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    limit = asyncio.Semaphore(MAX_CONNECTIONS)
    total = int(rate * duration)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    done_at = start

    async def one(intended: float) -> None:
        nonlocal opened, done_at
        async with limit:
            if idle:
                conn = idle.pop()
            else:
                conn = RawHttpConnection("127.0.0.1", port, timeout=10)
                opened += 1
            try:
                status, _ = await conn.request(method, path, body, headers)
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                errors[type(exc).__name__] += 1
                await conn.aclose()
                return
            now = loop.time()
            latencies.append((now - intended) * 1000.0)
            statuses[status] += 1
            done_at = max(done_at, now)
            idle.append(conn)

    tasks = []
    for i in range(total):
        intended = start + i / rate
        delay = intended - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(intended)))
    await asyncio.gather(*tasks)
    for conn in idle:
        await conn.aclose()
    latencies.sort()
    return {
        "requests": total,
        "completed": len(latencies),
        "errors": dict(errors),
        "status_codes": {str(k): v for k, v in sorted(statuses.items())},
        "connections_opened": opened,
        "achieved_rate_per_s": round(len(latencies) / max(done_at - start, 1e-9), 1),
        "latency_ms": {
            "p50": round(percentile(latencies, 50), 3),
            "p90": round(percentile(latencies, 90), 3),
            "p99": round(percentile(latencies, 99), 3),
            "p999": round(percentile(latencies, 99.9), 3),
            "max": round(latencies[-1], 3) if latencies else None,
        },
    }
