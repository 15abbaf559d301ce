"""Status change -> DiscoveryClient cache update: p50/p99, in-memory and Redis stores.

A `fleetwatch serve` process holds one instance; this process flips its status through the API
(maintenance / active) and times, for each flip, from just before the PUT until the client's
watch callback sees the new status (the client follows the registry with a blocking query).

Target: <= 50 ms p99.
"""

from __future__ import annotations

import asyncio
import time

from _common import BENCH_TOKEN, emit, parser, progress, registry_process, summarize_ms
from fleetwatch.discovery import Change, DiscoveryClient, RegistryClient
from fleetwatch.registry._model import InstanceStatus
from fleetwatch_testing import HttpBackend, RedisServer, free_port


async def measure(url: str, changes: int) -> list[float]:
    """Seconds from each status change request to the client's callback."""
    delays: list[float] = []
    async with (
        HttpBackend() as backend,
        RegistryClient(url, token=BENCH_TOKEN) as api,
        DiscoveryClient(url, token=BENCH_TOKEN) as client,
    ):
        await api.register("bench", "a", {"host": "127.0.0.1", "port": backend.port})
        seen: asyncio.Queue[InstanceStatus] = asyncio.Queue()

        def on_change(change: Change) -> None:
            seen.put_nowait(change.instance.status)

        client.watch("bench", on_change)
        await client.follow("bench")
        async with asyncio.timeout(10):
            while (await seen.get()) is not InstanceStatus.AVAILABLE:
                pass
        for n in range(changes):
            target = "maintenance" if n % 2 == 0 else "active"
            started = time.perf_counter()
            await api.set_status("bench", "a", target)
            async with asyncio.timeout(5):
                while True:
                    status = await seen.get()
                    if (status is InstanceStatus.MAINTENANCE) == (target == "maintenance"):
                        break
            delays.append(time.perf_counter() - started)
            if target == "active":  # let the monitor bring it back before the next flip
                async with asyncio.timeout(10):
                    while status is not InstanceStatus.AVAILABLE:
                        status = await seen.get()
    return delays


def main() -> None:
    """Both stores, side by side."""
    args = parser(__doc__ or "").parse_args()
    changes = 40 if args.quick else 200
    results = {}
    with RedisServer() as redis:
        for label, store in (("memory", "memory"), ("redis", redis.url)):
            port = free_port()
            progress(f"{label} store: {changes} status changes")
            with registry_process(port, store):
                delays = asyncio.run(measure(f"http://127.0.0.1:{port}", changes))
            results[label] = summarize_ms(delays)
            progress(f"{label}: {results[label]}")
    emit(
        "propagation",
        {
            "mode": "quick" if args.quick else "full",
            "changes_per_store": changes,
            "stores": results,
            "headline": {
                "memory_p50_ms": results["memory"]["p50_ms"],
                "memory_p99_ms": results["memory"]["p99_ms"],
                "redis_p50_ms": results["redis"]["p50_ms"],
                "redis_p99_ms": results["redis"]["p99_ms"],
            },
            "targets": {
                "memory p99 <= 50 ms": results["memory"]["p99_ms"] <= 50,
                "redis p99 <= 50 ms": results["redis"]["p99_ms"] <= 50,
            },
        },
    )


if __name__ == "__main__":
    main()
