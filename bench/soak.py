"""Soak: 20 minutes of churn over the Redis store, shared by two `fleetwatch serve` nodes.

Every second 200 instances join and 200 leave, half through each node (each instance lives
``LIFETIME_S`` seconds, so about 200 x LIFETIME_S are registered at any time, all checked over
HTTP by the two nodes' monitors, which split them). Every ``SAMPLE_EVERY_S`` seconds it samples
each node's RSS (/proc) and asyncio task count (its /metrics), Redis's key count and memory,
and the store's orphan check (one Lua pass: index, lease or load entries whose instance is gone,
instances their service does not list). At the end the churn stops, every instance leaves, and
the same figures are taken again.

Targets: RSS growth < 10 % (end of churn against the end of warm-up), a stable task count
(end of churn within 10 % of warm-up, and back to the idle count once everyone left), and
0 orphaned keys, during the churn and at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import subprocess
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import redis.asyncio as aioredis

from _common import BENCH_TOKEN, emit, parser, progress, registry_process
from fleetwatch.registry.stores._redis import RedisStore
from fleetwatch_testing import RedisServer, free_port
from fleetwatch_testing.http_backend import BackendProcess

SERVICE = "soak"
CHURN_PER_S = 200
LIFETIME_S = 3
SAMPLE_EVERY_S = 10.0
BACKENDS = 4
#: Writes in flight at once from this driver (two nodes, a few connections each).
CONCURRENCY = 64


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def tasks_by_kind(http: httpx.AsyncClient, url: str) -> dict[str, int]:
    """The node's ``fleetwatch_asyncio_tasks`` gauge, by kind."""
    text = (await http.get(f"{url}/metrics")).text
    kinds = {}
    for line in text.splitlines():
        if line.startswith("fleetwatch_asyncio_tasks{"):
            kind = line.split('kind="', 1)[1].split('"', 1)[0]
            kinds[kind] = int(float(line.rsplit(" ", 1)[1]))
    if not kinds:
        raise RuntimeError(f"{url}/metrics has no fleetwatch_asyncio_tasks")
    return kinds


async def task_count(http: httpx.AsyncClient, url: str) -> int:
    """All the node's asyncio tasks."""
    return sum((await tasks_by_kind(http, url)).values())


@dataclass
class Sample:
    at_s: float
    rss_mb: list[float]
    tasks: list[int]
    redis_keys: int
    redis_mb: float
    orphans: int
    registered: int


@dataclass
class Churn:
    """Joins and leaves, with what failed."""

    joined: int = 0
    left: int = 0
    errors: int = 0
    late_ticks: int = 0
    stragglers: int = 0
    live: list[tuple[float, str, int]] = field(default_factory=list)


class Soak:
    def __init__(
        self,
        nodes: list[str],
        pids: list[int],
        redis_url: str,
        backend_ports: list[int],
    ) -> None:
        self.nodes = nodes
        self.pids = pids
        self.redis_url = redis_url
        self.backend_ports = backend_ports
        self.churn = Churn()
        self.samples: list[Sample] = []
        self._ids = itertools.count()
        self._gate = asyncio.Semaphore(CONCURRENCY)

    async def sample(
        self, http: httpx.AsyncClient, redis: aioredis.Redis, store: RedisStore, started: float
    ) -> Sample:
        tasks = [await task_count(http, url) for url in self.nodes]
        info = await redis.info("memory")
        sample = Sample(
            at_s=round(time.monotonic() - started, 1),
            rss_mb=[round(rss_mb(pid), 1) for pid in self.pids],
            tasks=tasks,
            redis_keys=int(await redis.dbsize()),
            redis_mb=round(int(info["used_memory"]) / 2**20, 2),
            orphans=len(await store.orphans()),
            registered=len(await store.instances(SERVICE)),
        )
        self.samples.append(sample)
        return sample

    async def write(self, operation: Awaitable[tuple[int, str]]) -> bool:
        async with self._gate:
            try:
                status, text = await operation
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, text = 0, f"{type(exc).__name__}: {exc}"
            if status < 300:
                return True
            self.churn.errors += 1
            if self.churn.errors <= 5:
                progress(f"write failed: {status} {text[:200]}")
            return False

    async def tick(self, clients: list[Writer]) -> None:
        """One second's churn: CHURN_PER_S join and the same number of the oldest leave."""
        now = time.monotonic()
        joins = []
        for _ in range(CHURN_PER_S):
            n = next(self._ids)
            node = n % len(clients)
            port = self.backend_ports[n % len(self.backend_ports)]
            body = {"host": "127.0.0.1", "port": port, "check": {"interval": 2, "timeout": 1}}
            joins.append((f"i{n}", node, clients[node].register(SERVICE, f"i{n}", body)))
        leaving = [entry for entry in self.churn.live if now - entry[0] >= LIFETIME_S]
        self.churn.live = [entry for entry in self.churn.live if now - entry[0] < LIFETIME_S]
        leaves = [
            clients[node].deregister(SERVICE, iid, tombstone=False) for _, iid, node in leaving
        ]
        results = await asyncio.gather(
            *(self.write(op) for _, _, op in joins), *(self.write(op) for op in leaves)
        )
        for (iid, node, _), ok in zip(joins, results[: len(joins)], strict=True):
            if ok:
                self.churn.live.append((now, iid, node))
                self.churn.joined += 1
        self.churn.left += sum(results[len(joins) :])

    async def leave_all(self, clients: list[Writer]) -> None:
        leaving, self.churn.live = self.churn.live, []
        await asyncio.gather(
            *(
                self.write(clients[node].deregister(SERVICE, iid, tombstone=False))
                for _, iid, node in leaving
            )
        )
        self.churn.left += len(leaving)


class Writer:
    """Registrations and deregistrations through one node's API, on aiohttp: the driver must
    not be the bottleneck (httpx took most of a core at 400 writes a second here)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {BENCH_TOKEN}"},
            timeout=aiohttp.ClientTimeout(total=10),
            connector=aiohttp.TCPConnector(limit=CONCURRENCY // 2),
        )

    async def _call(
        self, method: str, path: str, body: object = None, params: dict[str, str] | None = None
    ) -> tuple[int, str]:
        url = f"{self.url}{path}"
        async with self.session.request(method, url, json=body, params=params) as reply:
            return reply.status, await reply.text()

    def register(
        self, service: str, instance_id: str, body: dict[str, object]
    ) -> Awaitable[tuple[int, str]]:
        return self._call("PUT", f"/v1/services/{service}/instances/{instance_id}", body)

    def deregister(
        self, service: str, instance_id: str, *, tombstone: bool
    ) -> Awaitable[tuple[int, str]]:
        params = {"tombstone": "true" if tombstone else "false"}
        path = f"/v1/services/{service}/instances/{instance_id}"
        return self._call("DELETE", path, params=params)

    async def aclose(self) -> None:
        await self.session.close()


async def run(soak: Soak, duration: float, warmup: float) -> dict[str, object]:
    clients = [Writer(url) for url in soak.nodes]
    redis = aioredis.Redis.from_url(soak.redis_url)
    store = RedisStore(soak.redis_url)
    async with httpx.AsyncClient(timeout=10) as http:
        try:
            started = time.monotonic()
            await asyncio.sleep(3)  # both nodes have met in Redis and settled
            idle = await soak.sample(http, redis, store, started)
            progress(f"idle: {idle}")
            next_sample = time.monotonic() + SAMPLE_EVERY_S
            churn_started = time.monotonic()
            while (elapsed := time.monotonic() - churn_started) < duration:
                tick_started = time.monotonic()
                await soak.tick(clients)
                if time.monotonic() >= next_sample:
                    sample = await soak.sample(http, redis, store, started)
                    progress(
                        f"{elapsed:6.0f}s rss {sample.rss_mb} MB, tasks {sample.tasks}, "
                        f"registered {sample.registered}, redis keys {sample.redis_keys} "
                        f"({sample.redis_mb} MB), orphans {sample.orphans}, "
                        f"joined {soak.churn.joined}, errors {soak.churn.errors}"
                    )
                    next_sample += SAMPLE_EVERY_S
                spent = time.monotonic() - tick_started
                if spent > 1.0:
                    soak.churn.late_ticks += 1
                await asyncio.sleep(max(0.0, 1.0 - spent))
            churn_s = time.monotonic() - churn_started
            end_of_churn = soak.samples[-3:]
            await soak.leave_all(clients)
            # Registrations whose reply never came (a timed-out write that did land) are not in
            # the driver's list: take them from the store, so "everyone left" is true.
            stragglers = [i.instance_id for i in await store.instances(SERVICE)]
            await asyncio.gather(
                *(
                    soak.write(clients[0].deregister(SERVICE, iid, tombstone=False))
                    for iid in stragglers
                )
            )
            soak.churn.stragglers = len(stragglers)
            settled_s = await settle(http, soak.nodes, [t + 2 for t in idle.tasks])
            after = await soak.sample(http, redis, store, started)
            progress(f"after everyone left: {after}")
        finally:
            for client in clients:
                await client.aclose()
            await store.aclose()
            await redis.aclose()
    warm = [s for s in soak.samples[1:] if s.at_s - 3 >= warmup][:3] or soak.samples[1:4]
    return summarize(
        soak,
        idle=idle,
        warm=warm,
        end=end_of_churn,
        after=after,
        churn_s=churn_s,
        settled_s=settled_s,
    )


async def settle(http: httpx.AsyncClient, nodes: list[str], idle_tasks: list[int]) -> float:
    """Seconds until every node is back to its idle task count (watchers of the instances that
    left have stopped), or -1 if one is not within 60 s: then tasks leaked."""
    started = time.monotonic()
    while time.monotonic() - started < 60:
        counts = [await task_count(http, url) for url in nodes]
        if all(c <= idle for c, idle in zip(counts, idle_tasks, strict=True)):
            return round(time.monotonic() - started, 2)
        kinds = [await tasks_by_kind(http, url) for url in nodes]
        progress(f"waiting for the nodes to settle: tasks {kinds}, idle {idle_tasks}")
        await asyncio.sleep(1)
    return -1.0


def _median(samples: list[Sample], pick: str, node: int) -> float:
    return float(statistics.median(getattr(s, pick)[node] for s in samples))


def summarize(
    soak: Soak,
    *,
    idle: Sample,
    warm: list[Sample],
    end: list[Sample],
    after: Sample,
    churn_s: float,
    settled_s: float,
) -> dict[str, object]:
    nodes = []
    for n in range(len(soak.nodes)):
        warm_rss, end_rss = _median(warm, "rss_mb", n), _median(end, "rss_mb", n)
        warm_tasks, end_tasks = _median(warm, "tasks", n), _median(end, "tasks", n)
        nodes.append(
            {
                "rss_idle_mb": idle.rss_mb[n],
                "rss_warm_mb": warm_rss,
                "rss_end_mb": end_rss,
                "rss_growth_pct": round((end_rss - warm_rss) / warm_rss * 100, 2),
                "tasks_idle": idle.tasks[n],
                "tasks_warm": warm_tasks,
                "tasks_end_of_churn": end_tasks,
                "tasks_after_all_left": after.tasks[n],
            }
        )
    orphans_during = max(s.orphans for s in soak.samples)
    return {
        "nodes": nodes,
        "churn": {
            "seconds": round(churn_s, 1),
            "joined": soak.churn.joined,
            "left": soak.churn.left,
            "joins_per_s": round(soak.churn.joined / churn_s, 1),
            "write_errors": soak.churn.errors,
            "late_ticks": soak.churn.late_ticks,
            "stragglers": soak.churn.stragglers,
        },
        "redis": {
            "keys_idle": idle.redis_keys,
            "keys_end_of_churn": end[-1].redis_keys,
            "keys_after_all_left": after.redis_keys,
            "used_mb_end_of_churn": end[-1].redis_mb,
            "used_mb_after_all_left": after.redis_mb,
        },
        "tasks_settled_after_s": settled_s,
        "orphans_max_during_churn": orphans_during,
        "orphans_at_end": after.orphans,
        "registered_after_all_left": after.registered,
        "samples": [s.__dict__ for s in soak.samples],
    }


def main() -> None:
    """Two nodes on one Redis, the backends in their own processes, the churn from here."""
    p = parser(__doc__ or "")
    p.add_argument("--minutes", type=float, default=None, help="churn this long (default 20)")
    args = p.parse_args()
    minutes = args.minutes or (1.0 if args.quick else 20.0)
    duration = minutes * 60
    warmup = min(180.0, duration / 4)
    with RedisServer() as redis_server, contextlib.ExitStack() as stack:
        backends = [stack.enter_context(BackendProcess()) for _ in range(BACKENDS)]
        ports = [free_port(), free_port()]
        procs: list[subprocess.Popen[bytes]] = [
            stack.enter_context(registry_process(port, redis_server.url, log_level="warning"))
            for port in ports
        ]
        progress(
            f"soak: {minutes:g} min, {CHURN_PER_S} joins + {CHURN_PER_S} leaves per second, "
            f"2 nodes on Redis, {BACKENDS} backends"
        )
        soak = Soak(
            [f"http://127.0.0.1:{port}" for port in ports],
            [proc.pid for proc in procs],
            redis_server.url,
            [b.port for b in backends],
        )
        result = asyncio.run(run(soak, duration, warmup))
    nodes: list[dict[str, float]] = result["nodes"]  # type: ignore[assignment]
    churn: dict[str, float] = result["churn"]  # type: ignore[assignment]
    emit(
        "soak",
        {
            "mode": "quick" if args.quick else "full",
            "minutes": minutes,
            **result,
            "headline": {
                "churn": f"{churn['joins_per_s']} joins/s and as many leaves, "
                f"{churn['seconds']:.0f} s, 2 nodes",
                "rss_growth_pct (node A / B)": " / ".join(f"{n['rss_growth_pct']}" for n in nodes),
                "tasks warm -> end -> all left (idle)": " ; ".join(
                    f"{n['tasks_warm']:g} -> {n['tasks_end_of_churn']:g} -> "
                    f"{n['tasks_after_all_left']} ({n['tasks_idle']})"
                    for n in nodes
                ),
                "orphans (max during / end)": f"{result['orphans_max_during_churn']} / "
                f"{result['orphans_at_end']}",
                "write errors": churn["write_errors"],
            },
            "targets": {
                "RSS growth < 10%": all(n["rss_growth_pct"] < 10 for n in nodes),
                "task count stable": all(
                    abs(n["tasks_end_of_churn"] - n["tasks_warm"]) <= 0.1 * n["tasks_warm"]
                    for n in nodes
                )
                and result["tasks_settled_after_s"] >= 0,
                "0 orphaned keys": result["orphans_max_during_churn"] == 0
                and result["orphans_at_end"] == 0,
                "churn rate held (>= 95% of 200/s)": churn["joins_per_s"] >= 0.95 * CHURN_PER_S,
            },
        },
    )


if __name__ == "__main__":
    main()
