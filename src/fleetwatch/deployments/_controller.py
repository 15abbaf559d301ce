"""The deployment controller: one leader among the registry nodes reconciles every deployment.

Each pass, the node holding the ``controller`` lease compares each deployment's spec with
what it observes, which is the only truth: the instances in the registry (each names the
template that made it), the hosts, and the orders on their feeds. Then, within the spec's
surge and unavailability, it writes start orders for new instances (spread over matching
hosts with free slots) and stop orders for old ones, once enough new ones are available.
Every write carries the leader's :class:`~fleetwatch.hosts.Fence`, so a node that lost the
lease (paused, cut off) acts on nothing. It counts the orders still under way, so a new
leader never launches again what its predecessor ordered. When the store cannot be read, it
freezes: it never tears down what it cannot see.

A spec with a canary step first starts one new instance only, soaks it under the gateway's
traffic, and judges it by the gateway's per-version figures; a canary that fails its gates
is undone at once (its instance stopped, the previous revision written back). A start not
available within the spec's ready deadline is stopped and its host avoided; with only one
host to use, the rollout then fails at once, and the old instances keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fleetwatch.deployments._canary import FiguresSource, gateway_figures, regression
from fleetwatch.deployments._model import Deployment, DeploymentSpec, Phase, Progress
from fleetwatch.deployments._placement import candidates, place, retire_order
from fleetwatch.deployments._store import DeploymentStore, put_progress
from fleetwatch.errors import Conflict, Fenced, RegistryError, RegistryUnavailable
from fleetwatch.hosts._lease import Fence, Lease
from fleetwatch.hosts._model import (
    TEMPLATE_META,
    Host,
    Order,
    OrderAction,
    OrderState,
    template_id,
)
from fleetwatch.hosts._store import HostStore
from fleetwatch.registry._model import Instance, InstanceStatus

log = logging.getLogger("fleetwatch.controller")

LEASE_NAME = "controller"
DEFAULT_LEASE_TTL_S = 6.0
DEFAULT_TICK_S = 0.5
#: A host where a start failed gets no new start of the same template for this long.
BAD_HOST_S = 120.0
#: An instance its host still runs but the registry has lost (heartbeats that lapsed under
#: load) counts as still coming for this long before it is replaced.
LAPSED_GRACE_S = 30.0
#: A new instance unavailable this long (its server broke after it started) is replaced, as
#: a pod failing its liveness probe is restarted: a swamped machine's checks recover sooner.
BROKEN_AFTER_S = 120.0

Instances = Callable[[str], Awaitable[list[Instance]]]
#: Takes an instance out of routing through the registry: ``(service, instance_id)``.
Drain = Callable[[str, str], Awaitable[None]]


@dataclass
class Observed:
    """What one pass sees of one deployment."""

    new: list[Instance] = field(default_factory=list)
    old: list[Instance] = field(default_factory=list)
    starting: list[Order] = field(default_factory=list)
    stopping: set[str] = field(default_factory=set)
    #: Started instances of this revision that their live host still runs but the registry
    #: has lost, within their grace: counted as coming back, not replaced.
    lapsed: list[Order] = field(default_factory=list)
    #: Start orders of this revision not available within the spec's ready deadline.
    overdue: list[Order] = field(default_factory=list)
    #: New instances that broke after they started (see :data:`BROKEN_AFTER_S`).
    broken: list[Instance] = field(default_factory=list)

    @property
    def new_available(self) -> int:
        return sum(i.status.routable for i in self.new)

    @property
    def available(self) -> int:
        return self.new_available + sum(i.status.routable for i in self.old)


class Controller:
    """Reconciles deployments while this node holds the lease (``run`` until cancelled)."""

    def __init__(
        self,
        hosts: HostStore,
        deployments: DeploymentStore,
        instances: Instances,
        *,
        node_id: str,
        lease_ttl: float = DEFAULT_LEASE_TTL_S,
        tick: float = DEFAULT_TICK_S,
        figures: FiguresSource = gateway_figures,
        drain: Drain | None = None,
    ) -> None:
        self.hosts = hosts
        self.deployments = deployments
        self._instances = instances
        self.node_id = node_id
        self.lease_ttl = lease_ttl
        self.tick = tick
        self._figures = figures
        self._drain = drain
        self.lease: Lease | None = None
        #: When the lease was last taken or renewed (monotonic).
        self._renewed_at = 0.0
        #: (template, host) -> until when no start of that template goes there.
        self._bad_hosts: dict[tuple[str, str], float] = {}
        self._failed_orders: set[str] = set()
        #: template -> the last failed start's host and reason (said when no host is left).
        self._last_failure: dict[str, str] = {}
        #: Address -> live host, this pass: where an instance no host launched is retired.
        self._by_address: dict[str, str] = {}
        #: The hosts heard from lately, this pass.
        self._live: set[str] = set()
        #: Instances the live hosts say they run, this pass.
        self._on_hosts: set[str] = set()
        #: Instance -> when it was first seen lapsed (run by its host, lost by the registry).
        self._lapsed_since: dict[str, float] = {}
        #: The store's clock, this pass (order times are on it).
        self._now = 0.0
        #: Orders this controller wrote, by id: what it has done, for tests and the log.
        self.written: list[Order] = []

    @property
    def leading(self) -> bool:
        return self.lease is not None and self.lease.expires_at > time.time()

    async def run(self) -> None:
        """Hold or seek the lease, and reconcile each tick while leading."""
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._keep_lease(), name=f"controller-lease-{self.node_id}")
                while True:
                    try:
                        await self.step()
                    except RegistryUnavailable as exc:
                        log.warning("controller.frozen %s: the store is unreachable (%s)",
                                    self.node_id, exc)  # fmt: skip
                    await asyncio.sleep(self.tick)
        finally:
            if self.lease is not None:
                lease, self.lease = self.lease, None
                # Bounded: a store that is down must not hold the node's shutdown; the lease
                # then lapses by itself.
                with contextlib.suppress(RegistryError, TimeoutError):
                    async with asyncio.timeout(2):
                        await self.hosts.release_lease(LEASE_NAME, self.node_id, lease.epoch)

    async def step(self) -> None:
        """One pass: renew or take the lease, then reconcile every deployment once."""
        await self._hold_lease()
        if self.lease is None:
            return
        fence = Fence(LEASE_NAME, self.lease.epoch)
        _, records = await self.deployments.deployments()
        if not records:
            return
        hosts = await self.hosts.hosts()
        now = await self.hosts.now()
        alive = [(h, h.alive(now)) for h in hosts]
        # A host that missed a report is not scheduled onto, but what it runs and the orders
        # on its feed still count for one more lease: forgetting a quiet host's pending starts
        # would start their like elsewhere, past the surge, when it reports again.
        heard = [h for h in hosts if h.heard_lately(now)]
        feeds = {h.host_id: (await self.hosts.orders(h.host_id))[1] for h in heard}
        self._by_address = {h.address: h.host_id for h, up in alive if up}
        self._live = {h.host_id for h, up in alive if up}
        self._on_hosts = {i for h in heard for i in h.instances}
        self._lapsed_since = {i: t for i, t in self._lapsed_since.items() if i in self._on_hosts}
        self._now = now
        for deployment in records:
            try:
                await self.reconcile(deployment, alive, feeds, fence)
            except Fenced:
                log.warning("controller.fenced %s: lost the lease, stopping", self.node_id)
                self.lease = None
                return

    async def _keep_lease(self) -> None:
        """Renew a held lease every third of its ttl, whatever the passes do: a pass slowed
        by a busy store (a hundred feeds to read) must not cost the lease, and each change of
        leader is a pass that starts with no memory of the failed starts."""
        while True:
            due = self._renewed_at + self.lease_ttl / 3 - time.monotonic()
            await asyncio.sleep(max(due, self.tick))
            with contextlib.suppress(RegistryUnavailable):  # the passes freeze meanwhile
                await self._renew_if_due()

    async def _renew_if_due(self) -> None:
        """Renew the held lease if a third of its ttl has passed since it was last renewed."""
        held = self.lease
        if held is None or time.monotonic() - self._renewed_at < self.lease_ttl / 3:
            return
        renewed = await self.hosts.renew_lease(LEASE_NAME, self.node_id, held.epoch, self.lease_ttl)
        if self.lease is not held:
            return  # dropped (fenced) meanwhile: what the pass found stands
        self.lease, self._renewed_at = renewed, time.monotonic()
        if renewed is None:
            log.warning("controller.lease_lost %s", self.node_id)

    async def _hold_lease(self) -> None:
        await self._renew_if_due()
        if self.lease is None:
            self.lease = await self.hosts.acquire_lease(LEASE_NAME, self.node_id, self.lease_ttl)
            if self.lease is not None:
                self._renewed_at = time.monotonic()
                log.info("controller.leading %s epoch=%d", self.node_id, self.lease.epoch)

    def observe(
        self, deployment: Deployment, instances: Sequence[Instance], feeds: dict[str, list[Order]]
    ) -> Observed:
        """Sort what runs into new (this revision's template) and old, and the orders under way."""
        spec = deployment.spec
        template = template_id(spec.profile, spec.version, spec.params)
        seen = Observed()
        registered = {i.instance_id for i in instances}
        for host_id, orders in feeds.items():
            for order in orders:
                if order.service != spec.service:
                    continue
                failed_here = order.state in (OrderState.FAILED, OrderState.REFUSED)
                if failed_here and order.action is OrderAction.START and order.template == template:
                    self.note_failed_start(template, host_id, order.order_id, order.reason)
                if self._lapsed(order, template, registered):
                    seen.lapsed.append(order)
                if order.state.finished:
                    continue
                if order.action is OrderAction.STOP:
                    seen.stopping.add(order.instance_id)
                elif order.template == template and order.state is not OrderState.AVAILABLE:
                    late = self._now - order.created_at > spec.ready_deadline_s
                    (seen.overdue if late and order.created_at else seen.starting).append(order)
        # A start order whose instance has registered counts once, as the instance.
        seen.starting = [o for o in seen.starting if o.instance_id not in registered]
        overdue = {o.instance_id for o in seen.overdue}
        for instance in instances:
            if instance.instance_id in seen.stopping or instance.status is InstanceStatus.DRAINING:
                continue
            if instance.instance_id in overdue:
                continue  # stopped this pass: neither new nor old
            is_new = instance.metadata.get(TEMPLATE_META) == template
            if is_new and _broken(instance, time.time()):
                seen.broken.append(instance)  # replaced this pass: neither new nor old
                continue
            (seen.new if is_new else seen.old).append(instance)
        return seen

    def _lapsed(self, order: Order, template: str, registered: set[str]) -> bool:
        """Whether ``order`` started an instance of ``template`` that its live host still
        runs but the registry no longer lists, first seen so less than the grace ago. (A
        registry swamped by a fleet lets heartbeats lapse; replacing each instance that lapsed
        would order more than the surge allows, and fill the hosts.)"""
        iid = order.instance_id
        if (
            order.action is not OrderAction.START
            or order.template != template
            or order.state is not OrderState.AVAILABLE
            or iid in registered
            or iid not in self._on_hosts
        ):
            self._lapsed_since.pop(iid, None)
            return False
        since = self._lapsed_since.setdefault(iid, self._now)
        return self._now - since < LAPSED_GRACE_S

    async def reconcile(
        self,
        deployment: Deployment,
        hosts: list[tuple[Host, bool]],
        feeds: dict[str, list[Order]],
        fence: Fence,
    ) -> None:
        """Move one deployment one step towards its spec, within its limits."""
        spec = deployment.spec
        seen = self.observe(deployment, await self._instances(spec.service), feeds)
        if deployment.paused:
            await self._progress(deployment, seen, Phase.PAUSED, "paused", fence)
            return
        if deployment.progress.phase is Phase.FAILED:
            # New instances that never became available go (every one, after a failed
            # canary); the old ones are not touched. An operator's next revision (or undo)
            # starts the deployment moving again.
            condemned = deployment.progress.canary_verdict == "failed"
            for instance in seen.new:
                if condemned or not instance.status.routable:
                    await self._stop(instance, fence)
            return
        template = template_id(spec.profile, spec.version, spec.params)
        for order in seen.overdue:
            reason = f"not available within {spec.ready_deadline_s:g}s"
            self.note_failed_start(template, order.host_id, order.order_id, reason)
            await self._stop_ordered(order, fence)
        for instance in seen.broken:
            # Counted as planned, it would hold the rollout for ever: no start fits beside
            # it, and with max_unavailable 0 no old instance may go. It is replaced instead.
            reason = f"unavailable for over {BROKEN_AFTER_S:g}s"
            host_id = instance.metadata.get("host_id", "")
            order_id = instance.metadata.get("order_id", instance.instance_id)
            self.note_failed_start(template, host_id, order_id, reason)
            await self._stop(instance, fence)
        canary = self._in_canary(deployment, seen)
        wanted = 1 if canary else spec.replicas
        surge, unavailable = spec.surge(), spec.unavailable()
        planned_new = len(seen.new) + len(seen.starting) + len(seen.lapsed)
        total = planned_new + len(seen.old)
        to_start = min(wanted - planned_new, spec.replicas + surge - total)
        started = await self._start(deployment, hosts, to_start, fence) if to_start > 0 else 0
        if to_start > 0 and not started and self._no_host_left(template, hosts, spec):
            message = f"no host can start revision {deployment.revision}: " + (
                self._last_failure.get(template, "no matching host has a free slot")
            )
            await self._progress(deployment, seen, Phase.FAILED, message, fence)
            return
        retiring = self.to_retire(seen, spec.replicas, unavailable)
        if canary:  # the old version serves on in full while the canary is judged
            retiring = [i for i in retiring if not i.status.routable] if surge else retiring[:1]
        for instance in retiring:
            await self._stop(instance, fence)
        if canary:
            await self._judge_canary(deployment, seen, fence)
            return
        done = seen.new_available >= spec.replicas and not seen.old
        phase, message = (Phase.COMPLETE, "complete") if done else (Phase.PROGRESSING, "")
        if not done and not message:
            message = (
                f"{seen.new_available}/{spec.replicas} of revision {deployment.revision} "
                f"available, {len(seen.old)} old, {len(seen.starting)} starting"
            ) + (f", {len(seen.lapsed)} lost by the registry" if seen.lapsed else "")
        await self._progress(deployment, seen, phase, message, fence)

    # -- the canary step ----------------------------------------------------------------------

    @staticmethod
    def _in_canary(deployment: Deployment, seen: Observed) -> bool:
        """Whether this revision is at its canary step: it has one, it has not been judged,
        and there is an old version serving to compare it with."""
        progress = deployment.progress
        judged = progress.revision == deployment.revision and progress.canary_verdict != ""
        old_serving = any(i.status.routable for i in seen.old)
        return deployment.spec.canary is not None and not judged and old_serving

    async def _judge_canary(self, deployment: Deployment, seen: Observed, fence: Fence) -> None:
        """Soak the available canary, then pass or fail it on the gateway's figures."""
        step = deployment.spec.canary
        assert step is not None
        progress = deployment.progress
        if seen.new_available == 0:
            message = f"canary of revision {deployment.revision}: starting"
            await self._progress(deployment, seen, Phase.PROGRESSING, message, fence)
            return
        now = time.time()
        if not progress.canary_since:
            message = f"canary of revision {deployment.revision}: soaking {step.soak_s:g}s"
            await self._progress(
                deployment, seen, Phase.PROGRESSING, message, fence, canary_since=now
            )
            return
        if now - progress.canary_since < step.soak_s:
            return
        old_version = Counter(i.version for i in seen.old).most_common(1)[0][0]
        figures = await self._figures(step.gateway_url)
        mine, theirs = figures.get(deployment.spec.version, {}), figures.get(old_version, {})
        judged: dict[str, Any] = {"new": dict(mine), "old": dict(theirs)}
        problem = regression(mine, theirs, step)
        if not problem:
            log.info("controller.canary_passed %s revision %d", deployment.service,
                     deployment.revision)  # fmt: skip
            message = f"canary passed: error rate {float(mine.get('error_rate', 0)):.2%}"
            await self._progress(
                deployment, seen, Phase.PROGRESSING, message, fence,
                canary_verdict="passed", canary_figures=judged,
            )  # fmt: skip
            return
        message = f"canary regressed: {problem}"
        log.warning("controller.canary_failed %s revision %d: %s", deployment.service,
                    deployment.revision, problem)  # fmt: skip
        await self._progress(
            deployment, seen, Phase.FAILED, message, fence,
            canary_verdict="failed", canary_figures=judged,
        )  # fmt: skip
        for instance in seen.new:
            await self._stop(instance, fence)
        await self._undo(deployment, message, judged, fence)

    async def _undo(
        self, deployment: Deployment, why: str, figures: dict[str, Any], fence: Fence
    ) -> None:
        """Write the previous revision's spec back as a new revision, fenced, noting why;
        nothing when there is none (the old instances serve on, as after any failure)."""
        if not deployment.history:
            return
        failed, (_, previous) = deployment.revision, deployment.history[0]
        note = f"revision {failed} undone: {why}"

        def change(known: Deployment | None) -> Deployment:
            if known is None or known.revision != failed:
                raise Conflict(f"{deployment.service!r} is no longer at revision {failed}")
            undone = known.revised(previous)
            progress = replace(undone.progress, note=note, canary_figures=figures)
            return undone.with_changes(progress=progress)

        try:
            await self.deployments.swap(deployment.service, change, fence=fence)
        except Conflict as exc:
            if isinstance(exc, Fenced):
                raise
            return  # an operator wrote a revision meanwhile: theirs stands
        log.warning("controller.undone %s: %s", deployment.service, note)

    def _no_host_left(
        self, template: str, hosts: list[tuple[Host, bool]], spec: DeploymentSpec
    ) -> bool:
        """Whether the one host this spec may use has failed a start of ``template`` lately.

        With one host (a rollout on one machine) there is nowhere else to try: the rollout
        fails at once, saying the host's reason. With more, a host that failed is avoided for
        a while and the start retried on the others, or on it again later, until the
        progress deadline: a fleet under load fails starts that succeed the next time.
        """
        # Every matching host the store knows, up or not: a fleet whose hosts all missed a
        # report under load (one answering) is not a fleet of one.
        known = [(host, True) for host, _ in hosts]
        matching = candidates(known, spec.service, spec.placement)
        if len(matching) != 1:
            return False
        return self._bad_hosts.get((template, matching[0].host_id), 0) >= time.monotonic()

    @staticmethod
    def to_retire(seen: Observed, replicas: int, unavailable: int) -> list[Instance]:
        """The instances to stop now, within ``replicas - unavailable`` (the floor):

        - old ones that are not routable, while the new available ones and every old one
          together stay above the floor (as a Kubernetes Deployment cleans up unhealthy old
          pods): a check failure across the old version at once (a busy machine, a busy
          registry) must not tear it down before new ones serve;
        - routable old ones, while at least the floor stays available;
        - then new ones beyond ``replicas`` (a scale-down), within the same bound.
        """
        floor = replicas - unavailable
        spare = seen.available - floor
        unhealthy_room = max(0, seen.new_available + len(seen.old) - floor)
        doomed = _by_spread([i for i in seen.old if not i.status.routable])[:unhealthy_room]
        for instance in _by_spread([i for i in seen.old if i.status.routable]):
            if spare <= 0:
                break
            doomed.append(instance)
            spare -= 1
        excess = len(seen.new) - replicas
        for instance in sorted(_by_spread(seen.new), key=lambda i: i.status.routable):
            if excess <= 0 or (instance.status.routable and spare <= 0):
                break
            doomed.append(instance)
            excess -= 1
            spare -= instance.status.routable
        return doomed

    async def _start(
        self, deployment: Deployment, hosts: list[tuple[Host, bool]], count: int, fence: Fence
    ) -> int:
        """Write up to ``count`` start orders; how many it wrote."""
        spec = deployment.spec
        template = template_id(spec.profile, spec.version, spec.params)
        now = time.monotonic()
        usable = [
            c
            for c in candidates(hosts, spec.service, spec.placement)
            if self._bad_hosts.get((template, c.host_id), 0) < now
        ]
        chosen = place(count, usable, spread=spec.spread)
        for host_id in chosen:
            order = Order(
                order_id=f"{spec.service}-r{deployment.revision}-{secrets.token_hex(4)}"[:63],
                host_id=host_id,
                action=OrderAction.START,
                service=spec.service,
                profile=spec.profile,
                version=spec.version,
                params=dict(spec.params),
            )
            stored, _ = await self.hosts.add_order(order, fence=fence)
            self.written.append(stored)
            log.info("controller.start %s on %s (%s)", spec.service, host_id, order.order_id)
        return len(chosen)

    async def _stop(self, instance: Instance, fence: Fence) -> None:
        # An instance no host launched (an agent started by hand, say) is retired through the
        # live host at its address, which drains it through the registry.
        host_id = instance.metadata.get("host_id") or self._by_address.get(instance.host)
        if not host_id:
            return  # on no host the controller knows: it orders only hosts
        await self._write_stop(host_id, instance.service, instance.instance_id, fence)
        if host_id not in self._live and self._drain is not None:
            # Its daemon is down but its agent may live on, serving: the stop order waits on
            # the host's feed until the daemon is back, and meanwhile the registry takes the
            # instance out of routing, so the rollout goes on instead of waiting for a host
            # that may never return. Only after a fenced write: a deposed leader drains nothing.
            await self._drain(instance.service, instance.instance_id)
            log.info("controller.drained %s: host %s is down", instance.instance_id, host_id)

    async def _stop_ordered(self, start: Order, fence: Fence) -> None:
        """Stop what an overdue start order started (nothing yet if it has no instance)."""
        if start.instance_id:
            await self._write_stop(start.host_id, start.service, start.instance_id, fence)

    async def _write_stop(self, host_id: str, service: str, instance_id: str, fence: Fence) -> None:
        order = Order(
            order_id=f"stop-{instance_id}"[:63],
            host_id=host_id,
            action=OrderAction.STOP,
            service=service,
            instance_id=instance_id,
        )
        try:
            stored, _ = await self.hosts.add_order(order, fence=fence)
        except Conflict as exc:
            if isinstance(exc, Fenced):
                raise
            return  # the same stop already stands
        self.written.append(stored)
        log.info("controller.stop %s on %s", instance_id, host_id)

    def note_failed_start(
        self, template: str, host_id: str, order_id: str, reason: str = ""
    ) -> None:
        """Keep starts of ``template`` off ``host_id`` for a while: a launch failed there
        (each failed order counts once, however often the feed shows it)."""
        if order_id in self._failed_orders:
            return
        self._failed_orders.add(order_id)
        self._bad_hosts[(template, host_id)] = time.monotonic() + BAD_HOST_S
        self._last_failure[template] = f"{host_id}: {reason or 'the start failed'}"
        log.warning("controller.start_failed %s on %s: other hosts first", order_id, host_id)

    async def _progress(
        self,
        deployment: Deployment,
        seen: Observed,
        phase: Phase,
        message: str,
        fence: Fence,
        **canary: Any,
    ) -> None:
        """Record where the rollout stands (``canary``: the canary fields that change)."""
        old = deployment.progress
        now = time.time()
        moved = seen.new_available != old.updated or phase != old.phase or bool(canary)
        same = old.revision == deployment.revision
        # The same revision keeps its canary fields and note; another starts from none.
        progress = replace(
            old if same else Progress(),
            revision=deployment.revision,
            phase=phase,
            message=message,
            updated=seen.new_available,
            available=seen.available,
            replicas=deployment.spec.replicas,
            updated_at=now,
            progressed_at=now if moved or not old.progressed_at else old.progressed_at,
            **canary,
        )
        if phase is Phase.PROGRESSING and now - progress.progressed_at > (
            deployment.spec.progress_deadline_s
        ):
            progress = replace(
                progress, phase=Phase.FAILED, message="no progress within the progress deadline"
            )
        if (
            not canary
            and same
            and (progress.phase, progress.message, progress.updated, progress.available)
            == (old.phase, old.message, old.updated, old.available)
        ):
            return  # nothing new to say: no write, no feed event
        try:
            await put_progress(self.deployments, deployment.service, progress, fence)
        except Conflict as exc:
            if isinstance(exc, Fenced):
                raise
            # the deployment moved to another revision during this pass: the next one sees it


def _broken(instance: Instance, now: float) -> bool:
    """Whether ``instance`` became unavailable after it started (its agent judged its server
    failing) and has stayed so for over :data:`BROKEN_AFTER_S`."""
    return (
        instance.status is InstanceStatus.UNAVAILABLE
        and instance.status_since > 0
        and now - instance.status_since > BROKEN_AFTER_S
    )


def _by_spread(instances: list[Instance]) -> list[Instance]:
    """Instances in the order to retire them: from the busiest host first."""
    by_id = {i.instance_id: i for i in instances}
    order = retire_order({i.instance_id: i.metadata.get("host_id", "") for i in instances})
    return [by_id[i] for i in order]
