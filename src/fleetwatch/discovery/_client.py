"""The discovery client: a local view of services, fed by the registry's change feed.

Each service a caller asks about gets a background blocking query (``?index=&wait=``), so the
view changes within milliseconds of the registry. When the registry cannot be reached the view
keeps serving its last-known-good instances, flagged stale, and keeps retrying with backoff;
a static list from configuration serves when nothing was ever fetched.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import urlsplit

from fleetwatch._async_resource import AsyncResource
from fleetwatch._supervisor import Supervisor
from fleetwatch.discovery._balancer import Balancer, LoadStats, Strategy, balancer_for
from fleetwatch.discovery._outlier import OutlierDetector, OutlierPolicy
from fleetwatch.discovery._registry_client import RegistryClient
from fleetwatch.errors import InstanceNotFound, RegistryError, RegistryUnavailable
from fleetwatch.registry._model import Instance, InstanceStatus, Registration

log = logging.getLogger("fleetwatch.discovery")

#: How long a blocking query waits at the registry before asking again.
DEFAULT_WAIT_S = 30.0
#: How long the first question about a service waits for the registry's answer.
FIRST_FETCH_TIMEOUT_S = 5.0
#: Reconnection backoff: from 100 ms doubling to 5 s, jittered.
BACKOFF_START_S, BACKOFF_MAX_S = 0.1, 5.0

ChangeKind = Literal["registered", "deregistered", "status_changed", "updated"]


@dataclass(frozen=True, slots=True)
class Change:
    """What a watcher is told: an instance appeared, went, changed status, or changed otherwise."""

    kind: ChangeKind
    service: str
    instance: Instance
    previous: Instance | None = None


Callback = Callable[[Change], Awaitable[None] | None]


@dataclass
class _View:
    service: str
    instances: dict[str, Instance] = field(default_factory=dict)
    index: int | None = None
    stale: bool = False
    fetched: bool = False
    last_error: str = ""
    updated_at: float = 0.0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    callbacks: list[Callback] = field(default_factory=list)
    #: The routable instances of ``instances``, worked out once per change of it.
    routable: tuple[Instance, ...] | None = None


def static_instance(service: str, url: str, number: int) -> Instance:
    """An instance from a static fallback URL such as ``http://10.0.0.5:8000``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"static fallback for {service!r}: {url!r} is not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Instance(
        service=service,
        instance_id=f"static-{number}",
        host=parts.hostname,
        port=port,
        scheme=parts.scheme,
        status=InstanceStatus.AVAILABLE,
        owner="static",
    )


class DiscoveryClient(AsyncResource):
    """Discover instances, pick one, watch for changes; survive the registry going away."""

    def __init__(
        self,
        registry_url: str | None = None,
        *,
        token: str | None = None,
        static: Mapping[str, Sequence[str]] | None = None,
        wait: float = DEFAULT_WAIT_S,
        first_fetch_timeout: float = FIRST_FETCH_TIMEOUT_S,
        strategy: Strategy | str = Strategy.ROUND_ROBIN,
        outliers: OutlierPolicy | None = None,
        client: RegistryClient | None = None,
    ) -> None:
        self._registry = client or RegistryClient(registry_url, token=token)
        self._own_registry = client is None
        self._static = {
            service: [static_instance(service, url, n) for n, url in enumerate(urls)]
            for service, urls in (static or {}).items()
        }
        self._wait = wait
        self._first_fetch_timeout = first_fetch_timeout
        self._views: dict[str, _View] = {}
        self.stats = LoadStats()
        self.outliers = OutlierDetector(outliers or OutlierPolicy())
        self._balancers: dict[tuple[str, Strategy], Balancer] = {}
        self._strategy = Strategy(strategy)
        self._closed = False
        #: One follower loop per service; a crash (a bug: registry errors are handled inside)
        #: is logged, counted and restarted.
        self.loops = Supervisor("discovery")

    async def aclose(self) -> None:
        """Stop following every service and close the HTTP client."""
        self._closed = True
        await self.loops.aclose()
        if self._own_registry:
            await self._registry.aclose()

    # -- the view --------------------------------------------------------------------------

    def _view(self, service: str) -> _View:
        """The view of ``service`` (created empty; nothing is started here)."""
        view = self._views.get(service)
        if view is None:
            view = self._views[service] = _View(service)
        return view

    async def follow(self, service: str) -> None:
        """Start following ``service`` through the change feed, if not already; every
        asynchronous read does this. Synchronous reads (:meth:`cached`, :meth:`routable`,
        :meth:`watch`) start nothing: they read what a follower has fetched."""
        view = self._view(service)
        name = f"follow.{service}"
        if not self._closed and not self.loops.is_running(name):
            self.loops.start(name, lambda: self._follow(view))

    async def _follow(self, view: _View) -> None:
        backoff = BACKOFF_START_S
        while True:
            try:
                index, instances = await self._registry.instances(
                    view.service, index=view.index, wait=self._wait
                )
            except RegistryError as exc:
                if not view.stale:
                    log.warning("discovery.stale %s: %s", view.service, exc)
                view.stale, view.last_error = True, str(exc)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            backoff = BACKOFF_START_S
            if view.index is not None and index < view.index:
                log.warning("discovery.index_reset %s: %d < %d", view.service, index, view.index)
            await self._apply(view, index, instances)

    async def _apply(self, view: _View, index: int, instances: Iterable[Instance]) -> None:
        new = {i.instance_id: i for i in instances}
        old = view.instances
        changes: list[Change] = []
        for instance_id, instance in new.items():
            before = old.get(instance_id)
            if before is None:
                changes.append(Change("registered", view.service, instance))
            elif before.status is not instance.status:
                changes.append(Change("status_changed", view.service, instance, before))
            elif _definition(before) != _definition(instance):
                changes.append(Change("updated", view.service, instance, before))
        for instance_id, instance in old.items():
            if instance_id not in new:
                changes.append(Change("deregistered", view.service, instance))
                self.outliers.forget(instance.key)
        view.instances, view.index, view.routable = new, index, None
        view.stale, view.fetched, view.updated_at = False, True, time.time()
        view.ready.set()
        for change in changes:
            for callback in list(view.callbacks):
                try:
                    outcome = callback(change)
                    if inspect.isawaitable(outcome):
                        await outcome
                except Exception:
                    log.exception("discovery.watch_callback_failed %s", view.service)

    async def _known(self, service: str) -> list[Instance]:
        await self.follow(service)
        view = self._view(service)
        if not view.fetched:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._first_fetch_timeout):
                    await view.ready.wait()
        if view.fetched:
            return list(view.instances.values())
        if service in self._static:
            return list(self._static[service])
        raise RegistryUnavailable(
            f"no instances known for {service!r}: the registry at {self._registry.url} did not "
            f"answer ({view.last_error or 'timeout'}) and there is no static fallback for it"
        )

    # -- the public API ----------------------------------------------------------------------

    async def instances(
        self,
        service: str,
        *,
        status: Iterable[InstanceStatus] = (),
        tags: Iterable[str] = (),
        passing: bool = True,
        fresh: bool = False,
    ) -> list[Instance]:
        """Instances of ``service`` from the local view (``fresh``: ask the registry now).

        ``passing`` (the default) keeps routable ones; ``status`` any of those; ``tags`` all.
        """
        if fresh:
            await self.refresh(service)
        statuses, wanted = frozenset(status), frozenset(tags)
        return [
            i
            for i in await self._known(service)
            if (not statuses or i.status in statuses)
            and wanted <= i.tags
            and (not passing or i.status.routable)
        ]

    def cached(self, service: str, *, passing: bool = True) -> list[Instance]:
        """The local view of ``service`` as it is now, without waiting or asking (empty before
        the first answer, unless there is a static fallback). It starts nothing: follow the
        service first (:meth:`follow`, or any asynchronous read)."""
        if passing:
            return list(self.routable(service))
        view = self._views.get(service)
        if view is None or not view.fetched:
            return list(self._static.get(service, ()))
        return list(view.instances.values())

    def routable(self, service: str) -> tuple[Instance, ...]:
        """:meth:`cached` ``(service)`` as a tuple that stays the same object until the view
        changes: the gateway's router keys its per-request work on it."""
        view = self._views.get(service)
        if view is None or not view.fetched:
            return tuple(i for i in self._static.get(service, ()) if i.status.routable)
        if view.routable is None:
            view.routable = tuple(i for i in view.instances.values() if i.status.routable)
        return view.routable

    async def get_instance(
        self,
        service: str,
        *,
        tags: Iterable[str] = (),
        strategy: Strategy | str | None = None,
    ) -> Instance | None:
        """One routable instance, chosen by the strategy among those whose circuit allows it
        (all of them in panic mode); ``None`` when there is none."""
        candidates = await self.instances(service, tags=tags)
        allowed, _panic = self.outliers.routable(candidates, lambda i: i.key)
        if not allowed:
            return None
        chosen = Strategy(strategy) if strategy else self._strategy
        balancer = self._balancers.get((service, chosen))
        if balancer is None:
            balancer = self._balancers[(service, chosen)] = balancer_for(chosen, self.stats)
        return balancer.pick(allowed)

    def is_stale(self, service: str) -> bool:
        """Whether the view of ``service`` is last-known-good (the registry is unreachable)."""
        view = self._views.get(service)
        return view is None or view.stale or not view.fetched

    def watch(self, service: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback`` for every change of ``service`` that its follower sees (follow it,
        see :meth:`follow`); returns a function that stops the calls."""
        view = self._view(service)
        view.callbacks.append(callback)

        def stop() -> None:
            with contextlib.suppress(ValueError):
                view.callbacks.remove(callback)

        return stop

    async def refresh(self, service: str) -> None:
        """Ask the registry now, bypassing the view (raises if it cannot be reached)."""
        await self.follow(service)
        view = self._view(service)
        index, instances = await self._registry.instances(service)
        await self._apply(view, index, instances)

    def invalidate(self, service: str | None = None) -> None:
        """Forget the view of one service (or all); the next question fetches it again."""
        for name in [service] if service is not None else list(self._views):
            view = self._views.pop(name, None)
            if view is None:
                continue
            followed = self.loops.is_running(f"follow.{name}")
            self.loops.cancel(f"follow.{name}")
            fresh = self._view(name)
            if view.callbacks:  # watchers keep watching the fresh view...
                fresh.callbacks.extend(view.callbacks)
            if followed and not self._closed:  # ...which is followed as the old one was
                self.loops.start(f"follow.{name}", functools.partial(self._follow, fresh))

    async def update_status(
        self,
        service: str,
        instance_id: str,
        status: InstanceStatus | Literal["active"],
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Set an operator status; with ``metadata``, merge it into the instance's metadata."""
        if metadata:
            current = next(
                (
                    i
                    for i in await self.instances(service, passing=False, fresh=True)
                    if i.instance_id == instance_id
                ),
                None,
            )
            if current is None:
                raise InstanceNotFound(
                    f"{service}/{instance_id} is not registered",
                    service=service,
                    instance_id=instance_id,
                )
            await self._registry.register(
                service,
                instance_id,
                replace(Registration.of(current), metadata={**current.metadata, **metadata}),
            )
        await self._registry.set_status(service, instance_id, status)

    @contextlib.asynccontextmanager
    async def request(self, instance: Instance) -> AsyncIterator[RequestOutcome]:
        """Track one request to ``instance``: outstanding count, latency, and its circuit.

        The request counts as failed if the block raises; call ``outcome.failed()`` for a bad
        answer (a 5xx), ``outcome.failed(connect_error=True)`` when nothing answered.
        """
        outcome = self.begin(instance)
        try:
            yield outcome
        except (asyncio.CancelledError, GeneratorExit):
            outcome.cancelled = True  # the caller gave up: says nothing about the instance
            raise
        except BaseException:
            outcome.failed()
            raise
        finally:
            self.finish(outcome)

    def begin(self, instance: Instance) -> RequestOutcome:
        """:meth:`request` without the block: a request to ``instance`` starts now; pass what
        this returns to :meth:`finish` once it ended, however it ended."""
        key = instance.key
        self.stats.begin(key)
        self.outliers.started(key)
        return RequestOutcome(instance=instance, started=time.perf_counter())

    def finish(self, outcome: RequestOutcome) -> None:
        """The request of ``outcome`` (from :meth:`begin`) ended as ``outcome`` says."""
        instance = outcome.instance
        assert instance is not None, "finish() takes what begin() returned"
        key = instance.key
        latency = time.perf_counter() - outcome.started
        self.stats.end(key, None if outcome.failure or outcome.cancelled else latency)
        if outcome.failure:
            view = self._views.get(instance.service)
            peers = len(view.instances) if view is not None else 1
            self.outliers.failed(key, connect_error=outcome.connect_error, peers=peers)
        elif not outcome.cancelled:
            self.outliers.succeeded(key)


@dataclass
class RequestOutcome:
    """Filled in by the caller of :meth:`DiscoveryClient.request`."""

    failure: bool = False
    connect_error: bool = False
    cancelled: bool = False
    #: The request's instance and start (``time.perf_counter``), set by ``begin``.
    instance: Instance | None = None
    started: float = 0.0

    def failed(self, *, connect_error: bool = False) -> None:
        """The request failed (a connect error ejects the instance at once)."""
        self.failure = True
        self.connect_error = self.connect_error or connect_error


def _definition(instance: Instance) -> tuple[object, ...]:
    return (
        instance.host,
        instance.port,
        instance.scheme,
        instance.tags,
        tuple(sorted(instance.metadata.items())),
        instance.version,
        instance.weight,
    )
