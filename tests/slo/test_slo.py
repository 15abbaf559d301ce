"""Service-level objectives: SLIs from sampled membership, error budgets, burn-rate alerts,
exposure through the API, metrics and ``fleetwatch status``, and history kept in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys

import httpx
import pytest

from fleetwatch.config._registry import ServeConfig, SloSection
from fleetwatch.discovery import RegistryClient
from fleetwatch.lifecycle import AppServer
from fleetwatch.registry._model import Instance, InstanceStatus
from fleetwatch.registry.stores._memory import MemoryStore
from fleetwatch.registry_api._node import RegistryNode
from fleetwatch.security._auth import Scope, Token, TokenAuth
from fleetwatch.slo import SloObjective, SloTracker
from fleetwatch_testing import HttpBackend, RedisServer, free_port, spawned
from tests._support.metrics import promtool_accepts
from tests._support.registry_node import TOKEN
from tests._support.waiting import poll_until


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def _instance(store: MemoryStore, iid: str, status: InstanceStatus) -> None:
    await store.upsert(Instance("llm", iid, "127.0.0.1", 9000 + len(iid)))
    await store.set_status("llm", iid, status, reason="test")


async def test_an_outage_spends_budget_and_fires_the_fast_burn_alert() -> None:
    """An hour sampled each second: 10 minutes with no instance available spends the 99.9 %
    budget several times over, burns fast over 5 min and 1 h, and capacity counts 1 of 2."""
    store, clock = MemoryStore(), Clock()
    objective = SloObjective(service="llm", objective=0.999, window=86400, desired=2)
    tracker = SloTracker(store, [objective], sample_every=1.0, clock=clock)
    await _instance(store, "a", InstanceStatus.AVAILABLE)
    for second in range(3600):
        if second == 3000:
            await store.set_status("llm", "a", InstanceStatus.UNAVAILABLE, reason="outage")
        await tracker.sample()
        clock.now += 1
    report = await tracker.report("llm")
    assert report.observed_s == 3600
    assert report.availability == round(3000 / 3600, 6)
    assert report.capacity == round(0.5 * 3000 / 3600, 6)
    assert report.budget_remaining == 0.0
    assert report.burn_rates["5m"] == 1000.0  # all bad: 1 / 0.001
    assert report.fast_burn
    assert report.slow_burn


async def test_a_healthy_service_keeps_its_budget() -> None:
    """Always available: availability 1, budget untouched, burn 0, no alert."""
    store, clock = MemoryStore(), Clock()
    tracker = SloTracker(store, [SloObjective(service="llm")], clock=clock)
    await _instance(store, "a", InstanceStatus.AVAILABLE)
    for _ in range(600):
        await tracker.sample()
        clock.now += 1
    report = await tracker.report("llm")
    assert (report.availability, report.budget_remaining) == (1.0, 1.0)
    assert report.burn_rates["5m"] == 0.0
    assert not report.fast_burn


async def test_request_slis_count_gateway_reports() -> None:
    """Requests reported by gateways: success and first-token-in-time shares; a failing
    stream of requests burns the request budget and fires the fast alert."""
    store, clock = MemoryStore(), Clock()
    objective = SloObjective(
        service="llm", request_objective=0.99, latency_objective=0.9, latency_threshold=2
    )
    tracker = SloTracker(store, [objective], clock=clock)
    await tracker.add_requests("llm", total=100, ok=90, fast=80)
    report = await tracker.report("llm")
    assert report.requests == 100
    assert report.request_success == 0.9
    assert report.latency_within_threshold == 0.8
    assert report.request_burn_rates["5m"] == 10.0  # 10 % failing against a 1 % budget
    await tracker.add_requests("llm", total=100, ok=0, fast=0)
    assert (await tracker.report("llm")).fast_burn


async def test_reports_for_a_service_without_an_objective_are_refused() -> None:
    """add_requests names only configured services."""
    tracker = SloTracker(MemoryStore(), [SloObjective(service="llm")])
    with pytest.raises(KeyError):
        await tracker.add_requests("other", total=1, ok=1, fast=1)


async def _node(redis: RedisServer, port: int) -> tuple[RegistryNode, AppServer]:
    config = ServeConfig(slos=[SloSection(service="llm", objective=0.99, window=3600)])
    auth = TokenAuth([Token("tests", TOKEN, Scope.ALL)])
    node = RegistryNode(config, store_url=redis.url, auth=auth)
    server = AppServer(node.app(), port=port)
    await server.start()
    return node, server


async def test_history_survives_a_registry_restart_on_redis_and_is_exposed(
    own_redis: RedisServer, backend: HttpBackend
) -> None:
    """Seconds sampled before a restart are still counted after it (Redis store); the API,
    the metrics (promtool-clean) and ``fleetwatch status --slo`` show the objective."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    _, server = await _node(own_redis, port)
    try:
        async with RegistryClient(url, token=TOKEN) as api:
            await api.register("llm", "a", {"host": "127.0.0.1", "port": backend.port})

            async def observed() -> bool:
                return (await api.slos())[0].observed_s >= 3

            await poll_until(observed, True, within=15)
    finally:
        await server.aclose()
    _, server = await _node(own_redis, port)  # a fresh node: nothing in memory
    try:
        async with RegistryClient(url, token=TOKEN) as api:
            (slo,) = await api.slos()
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(f"{url}/metrics")).text
            async with spawned(
                sys.executable, "-m", "fleetwatch", "status", "--registry", url, "--slo", "--json",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={"FLEETWATCH_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
            ) as process:  # fmt: skip
                async with asyncio.timeout(30):
                    out, _ = await process.communicate()
    finally:
        with contextlib.suppress(Exception):
            await server.aclose()
    assert slo.observed_s >= 3
    assert slo.objective == 0.99
    assert set(slo.burn_rates) == {"5m", "30m", "1h", "6h"}
    assert "fleetwatch_slo_error_budget_remaining_ratio" in metrics
    await promtool_accepts(metrics)
    assert process.returncode == 0
    assert json.loads(out)["slos"][0]["service"] == "llm"
