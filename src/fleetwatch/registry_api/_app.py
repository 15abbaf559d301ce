"""The registry HTTP API: an ASGI app over a :class:`~fleetwatch.registry.Registry`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from fleetwatch.deployments._open import deployment_store_for
from fleetwatch.deployments._store import DeploymentStore
from fleetwatch.hosts._memory import MemoryHostStore
from fleetwatch.hosts._store import HostStore
from fleetwatch.registry._registry import Registry
from fleetwatch.registry_api import _routes_deployments as routes_deployments
from fleetwatch.registry_api import _routes_discovery as routes_discovery
from fleetwatch.registry_api import _routes_hosts as routes_hosts
from fleetwatch.registry_api import _routes_instances as routes_instances
from fleetwatch.registry_api._errors import install_handlers
from fleetwatch.registry_api._hot_paths import HotPaths
from fleetwatch.registry_api._limits import BodyLimit
from fleetwatch.security._auth import TokenAuth

#: Registration bodies are small; anything larger is a mistake or an attack.
DEFAULT_MAX_BODY_BYTES = 64 * 1024


def create_app(
    registry: Registry,
    auth: TokenAuth,
    *,
    hosts: HostStore | None = None,
    deployments: DeploymentStore | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    hot_paths: bool = True,
) -> ASGIApp:
    """The registry API over ``registry`` (and ``hosts``: an embedded one if not given),
    guarded by ``auth``, bodies capped at a size. ``hot_paths=False`` leaves heartbeats and
    load reports to the framework too (a test compares the two)."""
    app = FastAPI(
        title="fleetwatch registry",
        version="1",
        description="Service registry and discovery for LLM inference fleets.",
        lifespan=lifespan,
    )
    app.state.registry = registry
    app.state.auth = auth
    app.state.hosts = hosts if hosts is not None else MemoryHostStore()
    if deployments is None:
        deployments = deployment_store_for(app.state.hosts)
    app.state.deployments = deployments
    install_handlers(app)
    app.include_router(routes_instances.router)
    app.include_router(routes_discovery.router)
    app.include_router(routes_hosts.router)
    app.include_router(routes_deployments.router)
    app.router.routes.extend(extra_routes)
    served: ASGIApp = HotPaths(app, registry, auth) if hot_paths else app
    return BodyLimit(served, max_body_bytes)
