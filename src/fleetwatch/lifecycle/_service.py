"""``serve_llm_app``: run a Python LLM service as a well-behaved fleet member.

An integrated LLM service: health, registration and a graceful drain. Given an ASGI app
(FastAPI, Starlette, ...):

- the probe endpoints (``/livez``, ``/readyz``, ``/startupz``, ``/health``, ``/healthz``,
  ``/health/<check>``) over the checks you pass, each run on its own schedule;
- ``/metrics`` in Prometheus text: uptime, whether the instance is registered, whether it is
  draining, requests in flight and served;
- ``/discover/{service}``: the routable instances of another service, from a discovery cache;
- ``POST /admin/drain`` (``Authorization: Bearer <admin token>``): start the drain;
- registration with heartbeats, checked by the registry on ``/readyz``;
- on SIGTERM/SIGINT or the drain endpoint: the sequence in :mod:`fleetwatch.lifecycle._drain`,
  then the server stops and the call returns the :class:`DrainReport`.

Example::

    app = FastAPI()
    asyncio.run(serve_llm_app(app, service="llm-api", port=8000,
                              checks=[(RedisCheck(url), CheckSettings("cache"))]))
"""

from __future__ import annotations

import asyncio
import hmac
import os
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from fleetwatch.discovery._client import DiscoveryClient
from fleetwatch.discovery._registration import Registered, registration
from fleetwatch.discovery._registry_client import RegistryClient
from fleetwatch.health import CheckSettings, HealthCheck, HealthProbes, HealthScheduler
from fleetwatch.lifecycle._app_server import AppServer, wait_for_stop_signal
from fleetwatch.lifecycle._drain import (
    DEFAULT_DRAIN_TIMEOUT_S,
    DEFAULT_PROPAGATION_DELAY_S,
    DrainReport,
    Membership,
    drain,
)
from fleetwatch.lifecycle._inflight import ASGIApp, InFlight, Receive, Scope, Send

#: The token ``POST /admin/drain`` requires, unless ``admin_token`` is given.
ADMIN_TOKEN_ENV = "FLEETWATCH_ADMIN_TOKEN"  # noqa: S105 - a variable name
_OWN_PATHS = frozenset({"/livez", "/readyz", "/startupz", "/health", "/healthz", "/metrics"})
_OWN_PREFIXES = ("/health/", "/discover/", "/admin/drain")


@dataclass
class ServiceOptions:
    """Everything :func:`serve_llm_app` takes besides the app (see its docstring)."""

    service: str
    checks: Iterable[tuple[HealthCheck, CheckSettings]] = ()
    registry: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    advertise_host: str | None = None
    instance_id: str | None = None
    token: str | None = None
    admin_token: str | None = None
    version: str = ""
    tags: Iterable[str] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    ttl: float = 30.0
    propagation_delay: float = DEFAULT_PROPAGATION_DELAY_S
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT_S


class _Dispatch:
    """fleetwatch's own paths to its app; everything else (lifespan too) to the user's."""

    def __init__(self, own: ASGIApp, user: ASGIApp) -> None:
        self.own = own
        self.user = user

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path in _OWN_PATHS or path.startswith(_OWN_PREFIXES)):
            await self.own(scope, receive, send)
        else:
            await self.user(scope, receive, send)


class LlmService:
    """The running service; :func:`serve_llm_app` is the short way to use it."""

    def __init__(self, app: ASGIApp, options: ServiceOptions) -> None:
        self.options = options
        self.inflight = InFlight(app)
        self.scheduler = HealthScheduler(options.checks)
        self.probes = HealthProbes(
            self.scheduler, service_id=options.service, version=options.version or None
        )
        self.instance_id = options.instance_id or (
            f"{socket.gethostname().split('.')[0]}-{options.port}"
        )
        self.admin_token = options.admin_token or os.environ.get(ADMIN_TOKEN_ENV)
        self.drain_requested = asyncio.Event()
        self.drain_reason = ""
        self.started_at = time.monotonic()
        self.registered: Registered | None = None
        self.report: DrainReport | None = None
        self.server: AppServer | None = None
        self._discovery: DiscoveryClient | None = None

    def asgi(self) -> ASGIApp:
        """The app served: the user's, wrapped and counted, beside fleetwatch's routes."""
        own = Starlette(
            routes=[
                *self.probes.routes(),
                Route("/metrics", self._metrics, methods=["GET"]),
                Route("/discover/{service}", self._discover, methods=["GET"]),
                Route("/admin/drain", self._drain_endpoint, methods=["POST"]),
            ]
        )
        return _Dispatch(own, self.inflight)

    def request_drain(self, reason: str) -> None:
        if not self.drain_requested.is_set():
            self.drain_reason = reason
            self.drain_requested.set()

    async def run(self, *, ready: asyncio.Event | None = None) -> DrainReport:
        """Serve, register, wait for a signal or a drain request, drain, stop."""
        o = self.options
        async with (
            RegistryClient(o.registry, token=o.token) as registry,
            DiscoveryClient(client=registry) as discovery,
            self.scheduler,
            AppServer(self.asgi(), host=o.host, port=o.port) as server,
        ):
            self.server = server
            self._discovery = discovery
            body: dict[str, Any] = {
                "check": {"type": "http", "path": "/readyz"},
                "version": o.version,
                "tags": sorted(o.tags),
                "metadata": {**self._dependencies(), **o.metadata},
            }
            async with registration(
                o.service,
                self.instance_id,
                host=o.advertise_host or o.host,
                port=server.port,
                ttl=o.ttl,
                deregister_on_exit=False,  # the drain deregisters, at the right moment
                client=registry,
                **body,
            ) as registered:
                self.registered = registered
                if ready is not None:
                    ready.set()
                signal_wait = asyncio.create_task(wait_for_stop_signal())
                drain_wait = asyncio.create_task(self.drain_requested.wait())
                try:
                    await asyncio.wait(
                        {signal_wait, drain_wait}, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for task in (signal_wait, drain_wait):
                        task.cancel()
                    await asyncio.gather(signal_wait, drain_wait, return_exceptions=True)
                if (
                    signal_wait.done()
                    and not signal_wait.cancelled()
                    and signal_wait.exception() is None
                ):
                    self.request_drain(signal_wait.result().name)
                self.report = await drain(
                    reason=self.drain_reason or "stopped",
                    inflight=self.inflight,
                    probes=self.probes,
                    membership=Membership(registry, o.service, self.instance_id),
                    propagation_delay=o.propagation_delay,
                    drain_timeout=o.drain_timeout,
                )
                registered.gone = True  # deregistered by the drain
        return self.report

    def _dependencies(self) -> dict[str, str]:
        """``depends_on``: the checks on other systems (the dashboard draws them as edges)."""
        names = [
            name
            for name, state in self.scheduler.states().items()
            if getattr(state.check, "component_type", "system") != "system"
        ]
        return {"depends_on": ",".join(names)} if names else {}

    # -- fleetwatch's routes -----------------------------------------------------------------

    async def _metrics(self, request: Request) -> Response:
        del request
        registered = self.registered is not None and not self.registered.gone
        lines = [
            "# HELP fleetwatch_uptime_seconds Seconds since the service started.",
            "# TYPE fleetwatch_uptime_seconds gauge",
            f"fleetwatch_uptime_seconds {time.monotonic() - self.started_at:.3f}",
            "# HELP fleetwatch_registered Whether the instance is registered (1) or not (0).",
            "# TYPE fleetwatch_registered gauge",
            f"fleetwatch_registered {int(registered)}",
            "# HELP fleetwatch_draining Whether the instance is draining.",
            "# TYPE fleetwatch_draining gauge",
            f"fleetwatch_draining {int(self.probes.draining)}",
            "# HELP fleetwatch_http_requests_in_flight Requests being served now.",
            "# TYPE fleetwatch_http_requests_in_flight gauge",
            f"fleetwatch_http_requests_in_flight {self.inflight.in_flight}",
            "# HELP fleetwatch_http_requests_served_total Requests served to the last byte.",
            "# TYPE fleetwatch_http_requests_served_total counter",
            f"fleetwatch_http_requests_served_total {self.inflight.served}",
        ]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    async def _discover(self, request: Request) -> Response:
        service = request.path_params["service"]
        assert self._discovery is not None
        try:
            instances = await self._discovery.instances(service)
        except Exception as exc:  # reported to the caller, not raised
            return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=503)
        return JSONResponse(
            {
                "service": service,
                "stale": self._discovery.is_stale(service),
                "instances": [
                    {
                        "instance_id": i.instance_id,
                        "base_url": i.base_url,
                        "status": i.status.value,
                        "version": i.version,
                        "metadata": dict(i.metadata),
                    }
                    for i in instances
                ],
            }
        )

    async def _drain_endpoint(self, request: Request) -> Response:
        if self.admin_token is None:
            return JSONResponse(
                {"error": f"draining through HTTP is off: set {ADMIN_TOKEN_ENV} or admin_token"},
                status_code=403,
            )
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.encode(), self.admin_token.encode()
        ):
            return JSONResponse({"error": "missing or wrong admin token"}, status_code=401)
        self.request_drain("drain requested over HTTP")
        return JSONResponse(
            {"message": "draining", "instance_id": self.instance_id}, status_code=202
        )


async def serve_llm_app(app: ASGIApp, **options: Any) -> DrainReport:
    """Serve ``app`` as a fleet member until SIGTERM/SIGINT or a drain; see :class:`ServiceOptions`
    for the keyword arguments (``service`` is required). Returns what the drain did."""
    return await LlmService(app, ServiceOptions(**options)).run()
