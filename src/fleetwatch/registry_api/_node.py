"""One registry node: store, registry rules, monitor, and the HTTP app, owned together."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from fleetwatch._supervisor import Supervisor
from fleetwatch.alerts import AlertEngine, notifier_for
from fleetwatch.config._registry import ServeConfig
from fleetwatch.deployments._controller import Controller
from fleetwatch.deployments._open import deployment_store_for
from fleetwatch.errors import RegistryError, RegistryUnavailable
from fleetwatch.health import (
    CheckSettings,
    Group,
    HealthProbes,
    HealthScheduler,
    HealthStatus,
    Observation,
)
from fleetwatch.hosts._open import open_host_store
from fleetwatch.hosts._store import HostStore
from fleetwatch.lifecycle._http_limits import HttpLimits
from fleetwatch.observability._metrics import (
    HealthMetrics,
    RegistryMetrics,
    TaskMetrics,
    metrics_route,
)
from fleetwatch.registry._model import InstanceStatus
from fleetwatch.registry._monitor import Monitor, MonitorSettings
from fleetwatch.registry._open_store import open_store
from fleetwatch.registry._preservation import PreservationPolicy
from fleetwatch.registry._registry import Registry
from fleetwatch.registry._store import RegistryStore
from fleetwatch.registry_api._app import create_app
from fleetwatch.registry_api._errors import status_of
from fleetwatch.registry_api._node_metrics import follow_changes, refresh, timed_discovery
from fleetwatch.security._auth import Scope, TokenAuth
from fleetwatch.security._networks import NetworkPolicy
from fleetwatch.slo import SloTracker

#: The dashboard: plain HTML, CSS and an ES module, served as they are (no build step).
UI_DIR = Path(__file__).parent / "ui"


class StoreCheck:
    """The registry's own readiness: can it reach its store?"""

    component_type = "datastore"
    measurement = "responseTime"

    def __init__(self, store: RegistryStore) -> None:
        self.store = store

    async def check(self) -> Observation:
        started = time.perf_counter()
        try:
            index = await self.store.index()
        except RegistryUnavailable as exc:
            return Observation(HealthStatus.UNHEALTHY, str(exc))
        ms = (time.perf_counter() - started) * 1000
        return Observation(
            HealthStatus.HEALTHY, f"store reachable, index {index}", round(ms, 3), "ms"
        )


class RegistryNode:
    """Everything ``fleetwatch serve`` runs, as one ASGI app whose lifespan owns it all."""

    def __init__(
        self,
        config: ServeConfig,
        *,
        store_url: str | None = None,
        auth: TokenAuth | None = None,
        store: RegistryStore | None = None,
        hosts: HostStore | None = None,
        controller: bool = True,
    ) -> None:
        self.config = config
        registry_config = config.registry
        url = store_url or registry_config.store
        self.store = store or open_store(url, namespace=registry_config.namespace)
        #: Hosts and their orders, in the same store as the instances.
        self.hosts = hosts or open_host_store(
            "memory" if store is not None and store_url is None else url,
            namespace=registry_config.namespace,
        )
        #: Deployments, beside the hosts, and the controller that carries them out while
        #: this node holds the controller lease.
        self.deployments = deployment_store_for(self.hosts)
        self.run_controller = controller
        policy = NetworkPolicy(registry_config.allowed_networks)
        self.registry = Registry(self.store, tombstone_s=registry_config.tombstone, policy=policy)
        preservation = PreservationPolicy(
            config.monitor.self_preservation_share, config.monitor.self_preservation_minimum
        )
        self.monitor = Monitor(
            self.store,
            MonitorSettings(
                deregister_after=config.monitor.deregister_after,
                preservation=preservation,
                policy=policy,
                ca_bundle=config.monitor.ca_bundle,
            ),
        )
        self.health = HealthScheduler(
            [
                (
                    StoreCheck(self.store),
                    CheckSettings(
                        "store",
                        interval=2,
                        timeout=2,
                        critical=True,
                        groups=frozenset({Group.READINESS, Group.STARTUP}),
                        rise=1,
                        fall=2,
                    ),
                )
            ]
        )
        self.probes = HealthProbes(self.health, service_id="fleetwatch-registry")
        self.slo = SloTracker(
            self.store,
            [slo.as_objective() for slo in config.slos],
            is_sampler=self._leads,
        )
        self.notifiers = {n.name: notifier_for(n.as_settings()) for n in config.notifiers}
        self.alerts = AlertEngine(
            [alert.as_rule() for alert in config.alerts],
            self.notifiers,
            instances=self.store.instances,
            slos=self.slo.reports,
            is_evaluator=self._leads,
        )
        self.metrics_registry = CollectorRegistry()
        self.metrics = RegistryMetrics(self.metrics_registry)
        HealthMetrics(self.health, self.metrics_registry)
        TaskMetrics(self.metrics_registry)
        if auth is None:
            tokens = config.secrets()
            auth = TokenAuth.from_environment(tokens, open_reads=registry_config.open_reads)
        self.auth = auth

    def _leads(self) -> bool:
        """Whether this node samples SLIs and evaluates alerts for the fleet (the first node
        by id), so that seconds are counted and alerts sent once, however many nodes run."""
        return min(self.monitor.nodes) == self.monitor.node_id

    def http_limits(self) -> HttpLimits:
        """The limits to serve :meth:`app` with, from ``[registry]``."""
        section = self.config.registry
        return HttpLimits(
            header_timeout=section.header_timeout,
            read_timeout=section.read_timeout,
            max_connections=section.max_connections,
        )

    async def _start_loops(self) -> Supervisor:
        """The node's own loops: metrics, SLO sampling, alerts, the deployment controller."""
        loops = Supervisor("node")
        loops.start("metrics-follow", lambda: follow_changes(self.registry, self.metrics))
        loops.start("slo-sampler", self.slo.run)
        for notifier in self.notifiers.values():
            await notifier.start()
        loops.start("alerts", self.alerts.run)
        if self.run_controller:
            controller = Controller(
                self.hosts,
                self.deployments,
                self.store.instances,
                node_id=self.monitor.node_id,
                drain=self._drain_for_controller,
            )
            loops.start("controller", controller.run, max_backoff=5.0)
        return loops

    async def _drain_for_controller(self, service: str, instance_id: str) -> None:
        await self.store.set_status(
            service, instance_id, InstanceStatus.DRAINING, reason="controller: its host is down"
        )

    def app(self) -> ASGIApp:
        """The HTTP app; serving it starts and stops the monitor and health checks."""

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            # Metrics following, SLO sampling and alert evaluation restart after a crash.
            loops = await self._start_loops()
            try:
                async with self.health, self.monitor:
                    yield
            finally:
                await loops.aclose()
                for notifier in self.notifiers.values():
                    await notifier.aclose()
                # Last: the monitor still talks to the store while it stops (it leaves the
                # node list), so the store closes after it.
                await self.store.aclose()
                await self.hosts.aclose()

        async def monitor_status(request: Request) -> JSONResponse:
            try:
                self.auth.principal(request.headers.get("authorization")).require(
                    Scope.READ, "reading the monitor's state"
                )
            except RegistryError as exc:
                return JSONResponse({"error": str(exc)}, status_of(exc))
            return JSONResponse(self.monitor.snapshot())

        async def scrape() -> None:
            await refresh(self.registry, self.metrics, lambda: self.monitor.preservation.engaged)
            with contextlib.suppress(RegistryError):
                self.metrics.set_slos(await self.slo.reports())

        async def alerts(request: Request) -> JSONResponse:
            try:
                self.auth.principal(request.headers.get("authorization")).require(
                    Scope.READ, "reading alerts"
                )
            except RegistryError as exc:
                return JSONResponse({"error": str(exc)}, status_of(exc))
            return JSONResponse(
                {
                    "firing": [
                        {"rule": rule, "subject": subject, "since": since, "summary": summary}
                        for (rule, subject), (since, summary) in sorted(self.alerts.firing.items())
                    ],
                    "pending": sorted(f"{r}:{s}" for r, s in self.alerts.pending),
                }
            )

        async def slo_requests(request: Request) -> JSONResponse:
            service = request.path_params["service"]
            try:
                self.auth.principal(request.headers.get("authorization")).require(
                    Scope.REGISTER, "reporting requests for an SLO"
                )
                body = await request.json()
                counts = [int(body[k]) for k in ("total", "ok", "fast")]
                if not 0 <= counts[2] <= counts[0] or not 0 <= counts[1] <= counts[0]:
                    raise ValueError("need 0 <= fast <= total and 0 <= ok <= total")
                await self.slo.add_requests(service, *counts)
            except RegistryError as exc:
                return JSONResponse({"error": str(exc)}, status_of(exc))
            except KeyError:
                return JSONResponse({"error": f"no [[slos]] objective for {service!r}"}, 404)
            except (ValueError, TypeError) as exc:
                return JSONResponse(
                    {"error": f"body: {{'total', 'ok', 'fast'}} as integers: {exc}"}, 400
                )
            return JSONResponse({"recorded": counts[0]})

        async def slos(request: Request) -> JSONResponse:
            try:
                self.auth.principal(request.headers.get("authorization")).require(
                    Scope.READ, "reading the service-level objectives"
                )
                reports = await self.slo.reports()
            except RegistryError as exc:
                return JSONResponse({"error": str(exc)}, status_of(exc))
            return JSONResponse({"slos": [r.as_dict() for r in reports]})

        routes: list[Any] = [
            *self.probes.routes(),
            Route("/v1/monitor", monitor_status),
            Route("/v1/slo", slos),
            Route("/v1/slo/{service}/requests", slo_requests, methods=["POST"]),
            Route("/v1/alerts", alerts),
            Route("/ui", lambda request: RedirectResponse("/ui/"), methods=["GET"]),
            Mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui"),
            metrics_route(self.metrics_registry, refresh=scrape),
        ]
        app = create_app(
            self.registry,
            self.auth,
            hosts=self.hosts,
            deployments=self.deployments,
            max_body_bytes=self.config.registry.max_body_bytes,
            lifespan=lifespan,
            extra_routes=routes,
        )
        return timed_discovery(app, self.metrics)
