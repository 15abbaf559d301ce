"""How long until a DiscoveryClient stops returning a dead instance: crash and hang.

Each trial starts a real HTTP backend process, registers it with the registry's *default*
check settings, waits until a DiscoveryClient routes to it, waits a random part of the check
interval (so the failure lands anywhere in the schedule), then SIGKILLs it (crash) or SIGSTOPs
it (hang), and times how long until the client no longer returns it. The registry runs as its
own `fleetwatch serve` process with the in-memory store.

Targets (default settings): crash <= 0.5 s p99, hang <= 3 s p99.
"""

from __future__ import annotations

import asyncio
import random
import time

from _common import BENCH_TOKEN, emit, parser, progress, registry_process
from fleetwatch.discovery import DiscoveryClient, RegistryClient
from fleetwatch_testing import BackendProcess, free_port


async def _until(predicate: object, within: float) -> None:
    assert callable(predicate)
    async with asyncio.timeout(within):
        while not await predicate():  # noqa: ASYNC110 - the client's view updates on its own
            await asyncio.sleep(0.002)


async def trial(url: str, client: DiscoveryClient, api: RegistryClient, n: int, mode: str) -> float:
    """One backend, registered, routed to, then crashed or frozen; seconds until dropped."""
    name = f"{mode}-{n}"
    with BackendProcess() as backend:
        await api.register("bench", name, {"host": "127.0.0.1", "port": backend.port})

        async def routed() -> bool:
            return any(i.instance_id == name for i in await client.instances("bench"))

        await _until(routed, 15)
        await asyncio.sleep(random.uniform(0, 1.0))  # anywhere in the 1 s check interval
        started = time.perf_counter()
        if mode == "crash":
            await asyncio.to_thread(backend.kill)
        else:
            backend.pause()

        async def dropped() -> bool:
            return not await routed()

        await _until(dropped, 15)
        elapsed = time.perf_counter() - started
        backend.resume()
    await api.deregister("bench", name)
    return elapsed


async def run(trials: int) -> dict[str, object]:
    """All trials, crash first, then hang."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    results: dict[str, list[float]] = {"crash": [], "hang": []}
    with registry_process(port):
        async with (
            RegistryClient(url, token=BENCH_TOKEN) as api,
            DiscoveryClient(url, token=BENCH_TOKEN) as client,
        ):
            for mode in ("crash", "hang"):
                for n in range(trials):
                    elapsed = await trial(url, client, api, n, mode)
                    results[mode].append(elapsed)
                    progress(f"{mode} {n + 1}/{trials}: {elapsed * 1000:.0f} ms")
    out: dict[str, object] = {}
    for mode, values in results.items():
        ordered = sorted(values)
        out[f"{mode}_p50_s"] = round(ordered[len(ordered) // 2], 4)
        out[f"{mode}_p99_s"] = round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 4)
        out[f"{mode}_max_s"] = round(ordered[-1], 4)
        out[f"{mode}_samples_s"] = [round(v, 4) for v in values]
    return out


def main() -> None:
    """Parse arguments, run, print the JSON line."""
    args = parser(__doc__ or "").parse_args()
    trials = 5 if args.quick else 20
    progress(f"{trials} crash and {trials} hang trials with default check settings")
    result = asyncio.run(run(trials))
    emit(
        "detection",
        {
            "mode": "quick" if args.quick else "full",
            "trials_each": trials,
            **result,
            "headline": {
                k: result[k] for k in ("crash_p50_s", "crash_p99_s", "hang_p50_s", "hang_p99_s")
            },
            "targets": {
                "crash_p99_s <= 0.5": float(result["crash_p99_s"]) <= 0.5,  # type: ignore[arg-type]
                "hang_p99_s <= 3": float(result["hang_p99_s"]) <= 3.0,  # type: ignore[arg-type]
            },
        },
    )


if __name__ == "__main__":
    main()
