"""Helpers the benchmark scripts share: argument parsing, progress output, the JSON last line."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from typing import Any


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
