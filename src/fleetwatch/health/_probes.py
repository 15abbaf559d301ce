"""Probe endpoints as Starlette routes any FastAPI/Starlette app can mount.

``/livez``, ``/readyz``, ``/startupz``, ``/health`` (alias ``/healthz``) and ``/health/<check>``,
each answering ``application/health+json``: 200 for pass and warn, 503 for fail, always
``Cache-Control: no-store`` (a cached readiness answer would hide a drain). ``?verbose`` adds every
check. Answers come from the scheduler's latest results, never from running a check, and are
rendered once per change, so a probe flood costs a dictionary lookup each.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from fleetwatch.health._aggregate import ScoreThresholds, Verdict, summarize
from fleetwatch.health._check import Group
from fleetwatch.health._groups import evaluate, members
from fleetwatch.health._health_json import MEDIA_TYPE, check_key, render, render_check
from fleetwatch.health._scheduler import CheckState, HealthScheduler
from fleetwatch.health._status import HealthStatus

_HEADERS = {"Cache-Control": "no-store"}
_ENDPOINTS: dict[str, Group | None] = {
    "/livez": Group.LIVENESS,
    "/readyz": Group.READINESS,
    "/startupz": Group.STARTUP,
    "/health": None,
    "/healthz": None,
}
_DRAINING_NOTE = "draining: readiness fails on purpose so traffic moves elsewhere"


def _wants_verbose(request: Request) -> bool:
    value = request.query_params.get("verbose")
    return value is not None and value.lower() not in ("0", "false", "no")


class HealthProbes:
    """The probe endpoints over one :class:`HealthScheduler`.

    ``start_draining()`` turns readiness to fail at once (``/health`` says so in its notes) so
    that load balancers stop sending new work; ``stop_draining()`` undoes it. Startup latches: once
    the startup group has passed, ``/startupz`` keeps passing, as a Kubernetes startup probe
    is only consulted until it first succeeds.
    """

    def __init__(
        self,
        scheduler: HealthScheduler,
        *,
        thresholds: ScoreThresholds | None = None,
        service_id: str | None = None,
        version: str | None = None,
        description: str | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.thresholds = thresholds or ScoreThresholds()
        self._service = {
            key: value
            for key, value in (
                ("serviceId", service_id),
                ("version", version),
                ("description", description),
            )
            if value
        }
        self._draining = False
        self._started = False
        self._cache: dict[tuple[str, bool], tuple[tuple[int, bool, int], int, bytes]] = {}

    @property
    def draining(self) -> bool:
        """Whether readiness is failing on purpose."""
        return self._draining

    def start_draining(self) -> None:
        """Fail readiness from now on, so traffic moves elsewhere."""
        self._draining = True

    def stop_draining(self) -> None:
        """Let readiness follow the checks again."""
        self._draining = False

    def verdict(
        self, group: Group | None, states: Mapping[str, CheckState] | None = None
    ) -> Verdict:
        """The current verdict of a group (``None`` for all checks), drain and latch applied."""
        if states is None:
            states = self.scheduler.states()
        verdict = evaluate(states, group, self.thresholds)
        if group is Group.READINESS and self._draining:
            return Verdict(HealthStatus.UNHEALTHY, "draining", verdict.score, verdict.summary)
        if group is Group.STARTUP:
            if self._started:
                return Verdict(HealthStatus.HEALTHY, "started", verdict.score, verdict.summary)
            if verdict.status.passing:
                self._started = True
        return verdict

    def document(self, group: Group | None, *, verbose: bool) -> tuple[int, dict[str, Any]]:
        """The HTTP status and health+json body for a group."""
        snapshot = self.scheduler.states()  # one snapshot: the verdict and the body agree
        verdict = self.verdict(group, snapshot)
        states = members(snapshot, group)
        body = render(verdict, states, verbose=verbose, notes=self._notes(), service=self._service)
        return (200 if verdict.status.passing else 503), body

    def routes(self, prefix: str = "") -> list[BaseRoute]:
        """Routes to add to an app: ``app.router.routes.extend(probes.routes())``."""
        routes: list[BaseRoute] = [
            Route(prefix + path, self._group_endpoint(path), methods=["GET", "HEAD"])
            for path in _ENDPOINTS
        ]
        routes.append(
            Route(prefix + "/health/{check}", self._check_endpoint, methods=["GET", "HEAD"])
        )
        return routes

    def asgi_app(self) -> Starlette:
        """A stand-alone ASGI app serving only the probe endpoints."""
        return Starlette(routes=self.routes())

    def _group_endpoint(self, path: str) -> Any:
        group = _ENDPOINTS[path]

        async def endpoint(request: Request) -> Response:
            verbose = _wants_verbose(request)
            status, content = self._cached(path, group, verbose)
            return Response(content, status, _HEADERS, MEDIA_TYPE)

        return endpoint

    def _cached(self, path: str, group: Group | None, verbose: bool) -> tuple[int, bytes]:
        # Rendered once per scheduler revision and drain state, and at least once a second,
        # so a check that stopped producing results is seen to go stale.
        key = (path, verbose)
        stamp = (self.scheduler.revision, self._draining, int(time.monotonic()))
        hit = self._cache.get(key)
        if hit and hit[0] == stamp:
            return hit[1], hit[2]
        status, body = self.document(group, verbose=verbose)
        content = json.dumps(body, separators=(",", ":")).encode()
        self._cache[key] = (stamp, status, content)
        return status, content

    async def _check_endpoint(self, request: Request) -> Response:
        name = request.path_params["check"]
        state = self.scheduler.state(name)
        if state is None:
            known = ", ".join(self.scheduler.names) or "none"
            body: dict[str, Any] = {
                "status": "fail",
                "output": f"no check named {name!r}; known checks: {known}",
            }
            return Response(json.dumps(body).encode(), 404, _HEADERS, MEDIA_TYPE)
        entry = render_check(state)
        verdict = Verdict(state.status, entry.get("output", ""), None, summarize([]))
        body = render(verdict, [], verbose=False, notes=self._notes(), service=self._service)
        body["checks"] = {check_key(state): [entry]}
        status = 200 if state.status.passing else 503
        return Response(json.dumps(body).encode(), status, _HEADERS, MEDIA_TYPE)

    def _notes(self) -> list[str] | None:
        return [_DRAINING_NOTE] if self._draining else None
