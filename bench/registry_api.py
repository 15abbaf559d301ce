"""Registry API throughput and latency (register, heartbeat, discover), memory vs Redis store,
and the memory of a `fleetwatch serve` holding 10,000 instances.

Closed loop: 32 keep-alive connections each send the next request as soon as the last answer
arrives, for a fixed time per operation. Instances use agent-held (ttl) checks so the monitor
does not probe them: this measures the API and the store, not health checking.

Target: RSS of `serve` with 10,000 instances < 300 MB.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable

from _common import BENCH_TOKEN, emit, parser, progress, registry_process, summarize_ms
from fleetwatch_testing import RedisServer, free_port
from fleetwatch_testing.raw_http import RawHttpConnection

CONNECTIONS = 32
AUTH = {"Authorization": f"Bearer {BENCH_TOKEN}"}
BODY = json.dumps({"host": "127.0.0.1", "port": 9, "check": {"type": "ttl"}, "ttl": "1h"}).encode()

Request = Callable[[int], tuple[str, str, bytes]]


async def closed_loop(port: int, seconds: float, make: Request) -> dict[str, float]:
    """Requests per second and latency of ``make(n)`` requests over CONNECTIONS connections."""
    counter = itertools.count()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        async with RawHttpConnection("127.0.0.1", port, timeout=10) as conn:
            while time.perf_counter() < deadline:
                method, path, body = make(next(counter))
                started = time.perf_counter()
                status, _ = await conn.request(method, path, body, AUTH)
                latencies.append(time.perf_counter() - started)
                if status >= 400:
                    errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    elapsed = time.perf_counter() - started
    return {
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "requests": len(latencies),
        "errors": errors,
        **summarize_ms(latencies),
    }


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def run_store(port: int, seconds: float, pid: int, fill: int) -> dict[str, object]:
    """The three operations, then (optionally) the fill to ``fill`` instances and its RSS."""
    base = "/v1/services"
    result: dict[str, object] = {}
    result["register"] = await closed_loop(
        port, seconds, lambda n: ("PUT", f"{base}/bench/instances/r{n}", BODY)
    )
    registered = int(result["register"]["requests"])  # type: ignore[index]
    result["heartbeat"] = await closed_loop(
        port, seconds, lambda n: ("PUT", f"{base}/bench/instances/r{n % registered}/heartbeat", b"")
    )
    for n in range(10):
        async with RawHttpConnection("127.0.0.1", port) as conn:
            await conn.request("PUT", f"{base}/small/instances/s{n}", BODY, AUTH)
    result["discover"] = await closed_loop(
        port, seconds, lambda n: ("GET", f"{base}/small/instances", b"")
    )
    result["rss_mb_before_fill"] = rss_mb(pid)
    if fill:
        async with RawHttpConnection("127.0.0.1", port) as conn:
            for n in range(fill):
                await conn.request("PUT", f"{base}/fill/instances/f{n}", BODY, AUTH)
        await asyncio.sleep(1.0)
        result["rss_mb_with_fill"] = rss_mb(pid)
        result["fill_instances"] = fill
    return result


def main() -> None:
    """Memory store, then Redis store, side by side."""
    args = parser(__doc__ or "").parse_args()
    seconds = 2.0 if args.quick else 10.0
    fill = 2_000 if args.quick else 10_000
    stores: dict[str, dict[str, object]] = {}
    with RedisServer() as redis:
        for label, url in (("memory", "memory"), ("redis", redis.url)):
            port = free_port()
            progress(f"{label} store: {seconds:g} s per operation, then {fill} instances")
            with registry_process(port, url) as proc:
                stores[label] = asyncio.run(run_store(port, seconds, proc.pid, fill))
            progress(f"{label}: {json.dumps(stores[label])}")

    def figure(store: str, op: str, key: str) -> float:
        return float(stores[store][op][key])  # type: ignore[index]

    headline = {
        f"{store}_{op}_{key}": figure(store, op, key)
        for store in stores
        for op in ("register", "heartbeat", "discover")
        for key in ("requests_per_s", "p99_ms")
    }
    headline["memory_rss_mb_with_fill"] = stores["memory"]["rss_mb_with_fill"]  # type: ignore[assignment]
    headline["redis_rss_mb_with_fill"] = stores["redis"]["rss_mb_with_fill"]  # type: ignore[assignment]
    emit(
        "registry_api",
        {
            "mode": "quick" if args.quick else "full",
            "connections": CONNECTIONS,
            "seconds_per_operation": seconds,
            "stores": stores,
            "headline": headline,
            "comparison": {
                "register_rps_memory_over_redis": round(
                    figure("memory", "register", "requests_per_s")
                    / figure("redis", "register", "requests_per_s"),
                    2,
                ),
            },
            "targets": {
                f"RSS with {fill} instances < 300 MB (memory store)": float(
                    stores["memory"]["rss_mb_with_fill"]  # type: ignore[arg-type]
                )
                < 300,
            },
        },
    )


if __name__ == "__main__":
    main()
