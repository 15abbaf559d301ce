"""Full reads of a Redis registry under churn: retrying until the index stands still (the old
way) against consistent_read (a few tries, then the index from just before the read).

600 instances; a writer in the same process keeps up N joins and N leaves a second. Each way
lists the whole registry LISTINGS times. The old way gives up after a cap of attempts (it has
no cap in production: it just spins), so its figures are a lower bound on what it costs.

Target: under 200 joins and 200 leaves a second, every consistent_read listing takes < 1 s.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time

from _common import emit, parser, progress
from fleetwatch.registry._model import CheckSpec, CheckType, Instance
from fleetwatch.registry._store import RegistryStore, consistent_read
from fleetwatch.registry.stores._redis import RedisStore
from fleetwatch_testing import RedisServer

FLEET = 600


def _member(n: int) -> Instance:
    return Instance(
        service="llm", instance_id=f"i{n}", host="127.0.0.1", port=10_000 + n % 50_000,
        check=CheckSpec(type=CheckType.TTL),
    )  # fmt: skip


async def _churn(store: RegistryStore, per_second: int, numbers: itertools.count[int]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        tick = loop.time()
        for _ in range(per_second // 10):
            n = next(numbers)
            await store.upsert(_member(n))
            await store.remove("llm", f"i{n - FLEET}")
        await asyncio.sleep(max(0.0, tick + 0.1 - loop.time()))


async def _until_still(store: RegistryStore, cap: int) -> int:
    """The old way: read until the index stood still across the listing; attempts used."""
    for attempt in range(1, cap + 1):
        before = await store.index()
        await store.instances()
        if await store.index() == before:
            return attempt
    return cap


async def measure(rate: int, listings: int, cap: int, url: str) -> dict[str, object]:
    """Both ways at one churn rate."""
    store = RedisStore(url, namespace=f"bench-churn-{rate}")
    numbers = itertools.count(FLEET)
    for n in range(FLEET):
        await store.upsert(_member(n))
    writer = asyncio.create_task(_churn(store, rate, numbers)) if rate else None
    await asyncio.sleep(1.0)
    old_attempts, old_ms, new_ms = [], [], []
    for listing in range(listings * 2):  # alternating, so neither way always meets a burst
        started = time.perf_counter()
        if listing % 2 == 0:
            old_attempts.append(await _until_still(store, cap))
            old_ms.append((time.perf_counter() - started) * 1000)
        else:
            await consistent_read(store, store.instances)
            new_ms.append((time.perf_counter() - started) * 1000)
    churned = next(numbers) - FLEET
    if writer is not None:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
    await store.aclose()
    gave_up = sum(1 for a in old_attempts if a >= cap)
    return {
        "joins_and_leaves_per_s": rate,
        "churned": churned,
        "old_median_attempts": statistics.median(old_attempts),
        "old_gave_up": f"{gave_up}/{listings}",
        "old_median_ms": round(statistics.median(old_ms), 1),
        "new_median_ms": round(statistics.median(new_ms), 1),
        "new_max_ms": round(max(new_ms), 1),
    }


async def main(quick: bool) -> None:
    """Run the rates and emit the result."""
    listings, cap = (5, 50) if quick else (20, 200)
    rows = []
    with RedisServer() as redis:
        for rate in (0, 50, 200):
            progress(f"churn {rate} joins + {rate} leaves a second: {listings} listings each way")
            rows.append(await measure(rate, listings, cap, redis.url))
            progress(f"  {rows[-1]}")
    heavy = rows[-1]
    emit(
        "churn_reads",
        {
            "mode": "quick" if quick else "full",
            "fleet": FLEET,
            "attempt_cap_old_way": cap,
            "rows": rows,
            "headline": {
                f"{r['joins_and_leaves_per_s']}/s churn: old way median attempts (cap {cap})": (
                    f"{r['old_median_attempts']} ({r['old_gave_up']} gave up), "
                    f"{r['old_median_ms']} ms"
                )
                for r in rows
            }
            | {
                f"{r['joins_and_leaves_per_s']}/s churn: consistent_read median / max": (
                    f"{r['new_median_ms']} / {r['new_max_ms']} ms"
                )
                for r in rows
            },
            "targets": {
                "consistent_read under 200/s churn always < 1 s": float(str(heavy["new_max_ms"]))
                < 1000
            },
        },
    )


if __name__ == "__main__":
    args = parser(__doc__ or "").parse_args()
    asyncio.run(main(args.quick))
