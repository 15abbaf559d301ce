"""Helpers the benchmark scripts share: argument parsing, progress output, the JSON last line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from fleetwatch.sandbox.ports import port_open, wait_until

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
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def registry_process(
    port: int, store: str = "memory"
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """``fleetwatch serve`` on ``port`` with ``store``, accepting ``BENCH_TOKEN``."""
    argv = [sys.executable, "-m", "fleetwatch", "serve", "--port", str(port), "--store", store]
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
