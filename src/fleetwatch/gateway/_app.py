"""The gateway: OpenAI-compatible routes proxied to healthy instances of one service.

This module wires the parts: discovery and the registry, the router (filters, scorers, a
picker: :mod:`fleetwatch.routing`), admission, the upstream HTTP client, the listeners of
request reports (statistics, metrics, SLIs) and the background tasks (servers' load, SLO
reports). :mod:`fleetwatch.gateway._proxy` serves the proxied requests, each in one
:class:`~fleetwatch.gateway._exchange.Exchange`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from fleetwatch import __version__
from fleetwatch._async_resource import AsyncResource
from fleetwatch._supervisor import Supervisor
from fleetwatch.discovery import DiscoveryClient, RegistryClient
from fleetwatch.discovery._client import Change
from fleetwatch.errors import Forbidden, InstanceNotFound, RegistryError, Unauthorized
from fleetwatch.gateway._admission import Admission
from fleetwatch.gateway._errors import error_body, error_response
from fleetwatch.gateway._exchange import ExchangeContext
from fleetwatch.gateway._load import LoadFeed
from fleetwatch.gateway._openapi import openapi_document
from fleetwatch.gateway._proxy import Proxy
from fleetwatch.gateway._settings import CONNECT_TIMEOUT_S, GatewaySettings
from fleetwatch.gateway._stats import GatewayStats, SliCounter
from fleetwatch.gateway._telemetry import MetricsListener
from fleetwatch.http1 import LeanServer, UpstreamPool
from fleetwatch.lifecycle._http_limits import BodySizeLimit, HttpLimits
from fleetwatch.observability._metrics import GatewayMetrics, TaskMetrics, metrics_route
from fleetwatch.registry._model import Instance
from fleetwatch.routing import (
    CircuitsAllow,
    PrefixScorer,
    Routable,
    ServesModel,
    Signals,
    TenantAllowed,
    build_pipeline,
)
from fleetwatch.security._auth import client_token
from fleetwatch.security._tls import client_context

log = logging.getLogger("fleetwatch.gateway")

PROXIED_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})
#: Between two chunks of a reply, longer than this is a stalled backend.
IDLE_TIMEOUT_S = 60.0
MODELS_CACHE_S = 2.0
MODELS_TIMEOUT_S = 2.0
UPSTREAM_KEEPALIVE_S = 3.0


class Gateway(AsyncResource):
    """One gateway for one service. ``async with Gateway(settings) as gw: gw.app()``."""

    def __init__(
        self, settings: GatewaySettings, *, discovery: DiscoveryClient | None = None
    ) -> None:
        self.settings = settings
        self.service = settings.service
        self._discovery_registry = RegistryClient(
            settings.registry_url, token=settings.registry_token, ca_bundle=settings.ca_bundle
        )
        self.discovery = discovery or DiscoveryClient(
            client=self._discovery_registry, outliers=settings.outliers
        )
        self._own_discovery = discovery is None
        self._registry = RegistryClient(
            settings.registry_url, token=settings.registry_token, ca_bundle=settings.ca_bundle
        )
        # Its own lean client upstream: httpx's pool slowed down as concurrency grew, and
        # aiohttp's request objects cost a third of the gateway's time per request.
        self.upstream = UpstreamPool(
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=IDLE_TIMEOUT_S,
            keepalive=UPSTREAM_KEEPALIVE_S,
            ssl_context=client_context(settings.ca_bundle),
        )
        self.admission = Admission(
            per_instance=settings.per_instance_limit,
            queue_limit=settings.queue_limit,
            queue_timeout=settings.queue_timeout,
        )
        self.load = LoadFeed(self._registry, self.service, settings.load_every)
        outliers = self.discovery.outliers
        self.router = build_pipeline(
            settings.router,
            Signals(stats=self.discovery.stats, reported=self.load.figures),
            filters=(
                ServesModel(),
                Routable(),
                TenantAllowed(),
                CircuitsAllow(lambda found: outliers.routable(found, _key)),
            ),
        )
        self.metrics_registry = CollectorRegistry()
        TaskMetrics(self.metrics_registry)
        self.metrics = GatewayMetrics(self.metrics_registry)
        self.metrics.watch_circuits(outliers.snapshot)
        prefix = self.router.scorer("prefix")
        self._metrics_listener = MetricsListener(
            self.metrics,
            self.service,
            prefix.index if isinstance(prefix, PrefixScorer) else None,
        )
        self.stats = GatewayStats()
        self.sli = SliCounter()
        self.exchanges = ExchangeContext(
            self.service,
            self.admission,
            self.discovery,
            listeners=(self.stats, self.sli, self._metrics_listener),
        )
        #: Load following and SLO reporting: each restarts after a crash, logged and counted.
        self.loops = Supervisor("gateway")
        self._stop_watching: Callable[[], None] = _nothing
        self._models: tuple[float, list[dict[str, Any]]] = (-math.inf, [])

    async def start(self) -> None:
        """Follow the service (waiting briefly for the first answer) and its load."""
        with contextlib.suppress(RegistryError):
            await self.discovery.instances(self.service)
        prefix = self.router.scorer("prefix")
        if isinstance(prefix, PrefixScorer):
            index = prefix.index

            def forget_gone(change: Change) -> None:
                # Gone, or out of service (a server restarting under the same registration
                # passes through starting or unavailable): its cache went with it.
                if change.kind == "deregistered" or not change.instance.status.routable:
                    index.forget(change.instance.key)

            self._stop_watching = self.discovery.watch(self.service, forget_gone)
        self.loops.start("load", self.load.run)
        self.loops.start("slo", self._report_slo)

    async def aclose(self) -> None:
        self._stop_watching()
        await self.loops.aclose()
        with contextlib.suppress(RegistryError):
            await self._send_sli()  # what was counted since the last report
        await self.upstream.aclose()
        await self._registry.aclose()
        if self._own_discovery:
            await self.discovery.aclose()
        await self._discovery_registry.aclose()

    def server(
        self, *, host: str = "127.0.0.1", port: int = 0, tls: tuple[str, str] | None = None
    ) -> LeanServer:
        """The gateway served by fleetwatch's lean HTTP/1.1 server (the hot path: see
        :mod:`fleetwatch.http1._server`), with the default limits and the gateway's body limit,
        refused in OpenAI's error format. ``async with gateway.server(port=...) as server``."""
        return LeanServer(
            self._routes(),
            host=host,
            port=port,
            tls=tls,
            limits=HttpLimits(max_body_bytes=self.settings.max_body_bytes),
            refuse=lambda message: error_body(message, "invalid_request_error"),
        )

    def app(self) -> ASGIApp:
        """The gateway as an ASGI app, for any ASGI server (:meth:`server` is faster)."""
        return BodySizeLimit(
            self._routes(),
            self.settings.max_body_bytes,
            lambda message: error_body(message, "invalid_request_error"),
        )

    def _routes(self) -> ASGIApp:
        """The OpenAI routes, ``/v1/models``, probes and the gateway's figures."""
        proxy = Proxy(self)
        routes = [
            Route("/v1/models", self._list_models, methods=["GET"]),
            Route("/v1/gateway/stats", self._stats, methods=["GET"]),
            Route("/livez", self._livez, methods=["GET"]),
            Route("/readyz", self._readyz, methods=["GET"]),
            Route("/openapi.json", self._openapi, methods=["GET"]),
            metrics_route(self.metrics_registry, refresh=self._refresh_metrics),
        ]
        rest = Starlette(routes=routes)

        async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
            # The proxied paths skip Starlette's router: they are the hot path.
            if scope["type"] == "http" and scope["path"] in PROXIED_PATHS:
                await proxy(scope, receive, send)
            else:
                await rest(scope, receive, send)

        return dispatch

    async def _refresh_metrics(self) -> None:
        self.metrics.count_ejections()
        self._metrics_listener.refresh()

    # -- SLO reports ------------------------------------------------------------------------

    async def _report_slo(self) -> None:
        """Send the request counts for the service's SLO to the registry, every report
        interval; learn the latency threshold from the objective."""
        while True:
            await asyncio.sleep(self.settings.slo_report_every)
            with contextlib.suppress(RegistryError):
                for slo in await self._registry.slos():
                    if slo.service == self.service and slo.latency_threshold_s:
                        self.sli.latency_threshold_s = slo.latency_threshold_s
                await self._send_sli()

    async def _send_sli(self) -> None:
        counts = self.sli.take()
        if not counts[0]:
            return
        try:
            await self._registry.report_requests(self.service, *counts)
        except (InstanceNotFound, Forbidden, Unauthorized):
            pass  # no objective for this service, or no right to report: nothing to keep
        except RegistryError:
            self.sli.put_back(counts)
            raise

    # -- the other routes -------------------------------------------------------------------

    async def _livez(self, request: Request) -> Response:
        del request
        return JSONResponse({"status": "pass"})

    async def _readyz(self, request: Request) -> Response:
        del request
        routable = len(self.discovery.cached(self.service))
        status = 200 if routable else 503
        return JSONResponse(
            {"status": "pass" if routable else "fail", "routable_instances": routable},
            status_code=status,
        )

    async def _openapi(self, request: Request) -> Response:
        del request
        return JSONResponse(openapi_document(__version__))

    async def _stats(self, request: Request) -> Response:
        del request
        return JSONResponse(
            {
                **self.stats.snapshot(),
                "in_flight": {f"{s}/{i}": n for (s, i), n in self.admission.in_flight.items()},
                "queued": self.admission.waiting,
                "circuits": self.discovery.outliers.snapshot(),
                # Requests sent again because their kept-alive connection was closed idle.
                "upstream_reopened": self.upstream.reopened,
                "router": {
                    "strategy": self.settings.router.strategy,
                    "scorers": {s.name: s.weight for s in self.router.scorers},
                },
            }
        )

    async def _list_models(self, request: Request) -> Response:
        """The union of ``/v1/models`` across the healthy instances (cached for 2 s)."""
        if (
            client_token(request.headers.get("authorization", ""), self.settings.client_tokens)
            is None
        ):
            return error_response(401, "missing or invalid gateway token", "authentication_error")
        now = time.monotonic()
        fetched_at, models = self._models
        if now - fetched_at > MODELS_CACHE_S:
            instances = self.discovery.cached(self.service)
            replies = await asyncio.gather(
                *(self._models_of(i) for i in instances), return_exceptions=True
            )
            union: dict[str, dict[str, Any]] = {}
            for reply in replies:
                if isinstance(reply, list):
                    for model in reply:
                        union.setdefault(str(model["id"]), model)
            models = sorted(union.values(), key=lambda m: str(m["id"]))
            self._models = (now, models)
        return JSONResponse({"object": "list", "data": models})

    async def _models_of(self, instance: Instance) -> list[dict[str, Any]]:
        key = self.settings.upstream_api_key
        headers = f"authorization: Bearer {key}\r\n".encode() if key else b""
        async with asyncio.timeout(MODELS_TIMEOUT_S):
            response = await self.upstream.request(instance.base_url, "GET", "/v1/models", headers)
            try:
                data = json.loads(await response.read()).get("data", [])
            finally:
                response.close()
        return [
            {"id": str(m["id"]), "object": "model", "owned_by": str(m.get("owned_by", ""))}
            for m in data
            if isinstance(m, dict) and "id" in m
        ]


def _nothing() -> None:
    pass


def _key(instance: Instance) -> tuple[str, str]:
    return instance.key
