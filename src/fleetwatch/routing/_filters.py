"""Filters: which instances may take a request at all. Each keeps a subset, in order."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Protocol

from fleetwatch.registry._model import Instance
from fleetwatch.routing._request import RouteRequest

Key = tuple[str, str]


class Filter(Protocol):
    """Keeps the instances that may serve ``request``.

    A filter with ``static = True`` looks only at the instances and the request's model and
    tenant, so the pipeline may remember what it kept while the instances stay the same."""

    name: str

    def apply(self, request: RouteRequest, instances: Sequence[Instance]) -> list[Instance]:
        """The instances kept."""
        ...


@functools.lru_cache(maxsize=1024)
def _names(*values: str) -> frozenset[str]:
    # Cached: every request asks this of every candidate, and metadata rarely changes.
    return frozenset(name.strip() for value in values for name in value.split(",") if name.strip())


def _listed(instance: Instance, *keys: str) -> frozenset[str]:
    """The comma-separated names in the instance's metadata ``keys``."""
    return _names(*(instance.metadata.get(key, "") for key in keys))


def advertised_models(instance: Instance) -> frozenset[str]:
    """The models an instance advertises (metadata ``model`` or ``models``)."""
    return _listed(instance, "model", "models")


def serves(instance: Instance, model: str | None) -> bool:
    """Whether ``instance`` advertises ``model`` (in metadata ``model`` or ``models``,
    comma-separated); an instance that advertises none is taken to serve any."""
    if model is None:
        return True
    advertised = advertised_models(instance)
    return not advertised or model in advertised


class ServesModel:
    """The request's model is one the instance advertises."""

    name = "model"
    static = True

    def apply(self, request: RouteRequest, instances: Sequence[Instance]) -> list[Instance]:
        return [i for i in instances if serves(i, request.model)]


class Routable:
    """Available or degraded: never starting, draining, in maintenance or unavailable."""

    name = "routable"
    static = True

    def apply(self, request: RouteRequest, instances: Sequence[Instance]) -> list[Instance]:
        del request
        return [i for i in instances if i.status.routable]


class TenantAllowed:
    """An instance whose metadata ``tenants`` lists names serves only those tenants; one
    without that key serves every tenant (and requests without a tenant)."""

    name = "tenant"
    static = True

    def apply(self, request: RouteRequest, instances: Sequence[Instance]) -> list[Instance]:
        return [
            i
            for i in instances
            if not (allowed := _listed(i, "tenants")) or request.tenant in allowed
        ]


class CircuitsAllow:
    """Instances whose circuit is closed (outlier ejection); all of them in panic mode."""

    name = "circuit"

    def __init__(
        self, routable: Callable[[Sequence[Instance]], tuple[list[Instance], bool]]
    ) -> None:
        self._routable = routable

    def apply(self, request: RouteRequest, instances: Sequence[Instance]) -> list[Instance]:
        del request
        allowed, _panic = self._routable(instances)
        return allowed
