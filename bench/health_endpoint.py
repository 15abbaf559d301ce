"""Probe server under an open-loop load: p50/p99 latency, achieved rate, check executions.

Five real checks (Redis, PostgreSQL, TCP, a 200 ms slow HTTP dependency, system) run in a
``fleetwatch check --serve`` process. This process sends GET /health at a constant arrival rate
(1,000/s for 10 s; --quick: 3 s) over keep-alive connections and measures each request's latency
from its *intended* send time, so a stall in the server (or here) shows up as latency instead of
silently lowering the rate (coordinated omission). Check executions are read from the server
before and after the load and compared with what the schedule implies.

Target: p99 <= 5 ms, and executions within the schedule's bounds (the probe flood adds none).

Side by side, in the same run: the seed lesson's design, where every /health request re-runs
every check, serving the same five checks. It is loaded at a much lower rate (50/s), because at
1,000/s it would send 5,000 checks a second to the dependencies; the ratios compare latency and
check executions per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import child, emit, open_loop, parser, progress
from fleetwatch.health._scheduler import DEFAULT_JITTER
from fleetwatch_testing import BackendProcess, PostgresServer, RedisServer, free_port
from fleetwatch_testing.raw_http import RawHttpConnection

RATE = 1000.0
SEED_STYLE_RATE = 50.0
INTERVAL_S = 1.0


def config_text(redis: RedisServer, postgres: PostgresServer, slow_port: int) -> str:
    """Five checks, each on a 1 s interval."""
    common = f'interval = "{INTERVAL_S}s"\ntimeout = "1s"\n'
    return "\n".join(
        [
            f'[[checks]]\nname = "cache"\ntype = "redis"\nurl = "{redis.url}"\n{common}',
            f'[[checks]]\nname = "db"\ntype = "postgres"\ndsn = "{postgres.dsn}"\n{common}',
            f'[[checks]]\nname = "db-port"\ntype = "tcp"\nhost = "127.0.0.1"\n'
            f"port = {postgres.port}\n{common}",
            f'[[checks]]\nname = "slow-api"\ntype = "http"\n'
            f'url = "http://127.0.0.1:{slow_port}/health"\n{common}',
            f'[[checks]]\nname = "host"\ntype = "system"\n{common}',
        ]
    )


async def executions(port: int) -> dict[str, int]:
    """Per-check execution counts, read from the server's verbose health document."""
    async with RawHttpConnection("127.0.0.1", port) as conn:
        _, body = await conn.get("/health?verbose")
    checks = json.loads(body)["checks"]
    return {key.split(":")[0]: entries[0]["executions"] for key, entries in checks.items()}


def schedule_bounds(window_s: float) -> tuple[int, int]:
    """Executions one check may do in ``window_s``: waits are interval x [1 - jitter, 1]."""
    low = int(window_s // INTERVAL_S)
    high = int(window_s // (INTERVAL_S * (1 - DEFAULT_JITTER))) + 1
    return low, high


async def measure(port: int, duration: float) -> dict[str, Any]:
    """Executions before, the load, executions after."""
    before = await executions(port)
    t0 = time.monotonic()
    load = await open_loop(port, RATE, duration)
    after = await executions(port)
    window = time.monotonic() - t0
    low, high = schedule_bounds(window)
    per_check = {name: after[name] - before[name] for name in after}
    return {
        **load,
        "executions": {
            "window_s": round(window, 3),
            "per_check": per_check,
            "total": sum(per_check.values()),
            "schedule_min_per_check": low,
            "schedule_max_per_check": high,
            "within_schedule": all(low <= n <= high for n in per_check.values()),
        },
    }


async def measure_seed_style(port: int, duration: float) -> dict[str, Any]:
    """The same open-loop measurement against the seed-style server, at a bounded rate."""

    async def total() -> int:
        async with RawHttpConnection("127.0.0.1", port) as conn:
            _, body = await conn.get("/executions")
        return int(json.loads(body)["executions"])

    before = await total()
    load = await open_loop(port, SEED_STYLE_RATE, duration)
    load["executions_total"] = await total() - before
    load["executions_per_request"] = round(load["executions_total"] / max(load["completed"], 1), 3)
    return load


def main() -> None:
    """Set up the servers, run the load, print the JSON result."""
    args = parser(__doc__ or "").parse_args()
    duration = 3.0 if args.quick else 10.0
    progress("starting redis-server, PostgreSQL and a 200 ms slow HTTP dependency")
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fleetwatch-bench-")))
        redis = stack.enter_context(RedisServer())
        postgres = stack.enter_context(PostgresServer())
        slow = stack.enter_context(BackendProcess(delay=0.2))
        config = workdir / "checks.toml"
        config.write_text(config_text(redis, postgres, slow.port))
        probe_port, seed_port = free_port(), free_port()
        fleetwatch = [sys.executable, "-m", "fleetwatch", "check", "--config", str(config)]
        seed_style = [sys.executable, str(Path(__file__).with_name("_seed_style_server.py"))]
        server = stack.enter_context(
            child([*fleetwatch, "--serve", f"127.0.0.1:{probe_port}", "--no-live"], probe_port)
        )
        seed = stack.enter_context(child([*seed_style, str(config), str(seed_port)], seed_port))
        if server.poll() is not None or seed.poll() is not None:
            raise SystemExit("a server exited during start-up")
        time.sleep(1.5)  # every check has reported at least once
        progress(f"open-loop load: {RATE:.0f} req/s for {duration:g} s against /health")
        result = asyncio.run(measure(probe_port, duration))
        progress(f"seed-style baseline: {SEED_STYLE_RATE:.0f} req/s for {duration:g} s")
        baseline = asyncio.run(measure_seed_style(seed_port, duration))
    per_request = result["executions"]["total"] / max(result["completed"], 1)
    latency = result["latency_ms"]
    progress(
        f"p50 {latency['p50']} ms, p99 {latency['p99']} ms, "
        f"rate {result['achieved_rate_per_s']}/s, executions {result['executions']['per_check']}"
    )
    emit(
        "health_endpoint",
        {
            "mode": "quick" if args.quick else "full",
            "rate_target_per_s": RATE,
            "duration_s": duration,
            "check_interval_s": INTERVAL_S,
            **result,
            "seed_style_baseline": baseline,
            "comparison": {
                "p50_ratio_seed_over_fleetwatch": round(
                    baseline["latency_ms"]["p50"] / latency["p50"], 1
                ),
                "executions_per_request_fleetwatch": round(per_request, 5),
                "executions_per_request_seed_style": baseline["executions_per_request"],
            },
            "headline": {
                "p50_ms": latency["p50"],
                "p99_ms": latency["p99"],
                "achieved_rate_per_s": result["achieved_rate_per_s"],
                "check_executions": result["executions"]["total"],
            },
            "targets": {
                "p99_ms <= 5": latency["p99"] <= 5.0,
                "executions within schedule": result["executions"]["within_schedule"],
                "no errors": not result["errors"],
            },
        },
    )


if __name__ == "__main__":
    main()
