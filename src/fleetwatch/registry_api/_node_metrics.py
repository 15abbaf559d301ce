"""The registry node's metrics: membership, changes off the change feed, discovery latency."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fleetwatch.errors import IndexReset, RegistryError
from fleetwatch.observability._metrics import RegistryMetrics
from fleetwatch.registry._registry import Registry

log = logging.getLogger("fleetwatch.registry_api")
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]
#: How long one wait on the change feed lasts before it is asked again.
FOLLOW_WAIT_S = 30.0


async def follow_changes(registry: Registry, metrics: RegistryMetrics) -> None:
    """Count every change on the feed (runs as long as the node; cancelled at shutdown)."""
    store = registry.store
    seen = await store.index()
    while True:
        try:
            await store.wait_for_change(seen, FOLLOW_WAIT_S)
            events = await store.events_after(seen, limit=1000)
            if events:
                now = await store.now()
                for event in events:
                    metrics.observe_event(event, now)
                seen = events[-1].index
        except IndexReset:
            seen = await store.index()  # restarted or too far behind: count from here
        except RegistryError as exc:
            log.warning("server.metrics_follow_failed %s", exc)
            await asyncio.sleep(1.0)


async def refresh(
    registry: Registry, metrics: RegistryMetrics, engaged: Callable[[], bool]
) -> None:
    """State read at scrape time: instances by service and status, self-preservation."""
    with contextlib.suppress(RegistryError):
        metrics.set_instances(await registry.services())
    metrics.self_preservation.set(1.0 if engaged() else 0.0)
    kinds = Counter(_task_kind(task) for task in asyncio.all_tasks())
    metrics.tasks.clear()
    for kind, count in kinds.items():
        metrics.tasks.labels(kind).set(count)


def _task_kind(task: asyncio.Task[Any]) -> str:
    """``fleetwatch.watch.llm/a`` -> ``watch``; tasks fleetwatch did not name -> ``other``."""
    parts = task.get_name().split(".", 2)
    return parts[1] if len(parts) > 1 and parts[0] == "fleetwatch" else "other"


def timed_discovery(app: ASGIApp, metrics: RegistryMetrics) -> ASGIApp:
    """Time discovery reads (GETs of services, instances, load), blocking queries excluded."""

    async def timed(scope: Scope, receive: Any, send: Any) -> None:
        endpoint = _endpoint(scope)
        if endpoint is None:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await app(scope, receive, send)
        finally:
            metrics.discovery.labels(endpoint).observe(time.perf_counter() - started)

    return timed


def _endpoint(scope: Scope) -> str | None:
    if scope["type"] != "http" or scope.get("method") != "GET":
        return None
    if b"index=" in scope.get("query_string", b""):
        return None  # a blocking query waits on purpose
    path: str = scope.get("path", "")
    if path == "/v1/services":
        return "services"
    if path.startswith("/v1/services/"):
        for tail in ("instances", "load"):
            if path.endswith("/" + tail):
                return tail
    return None
