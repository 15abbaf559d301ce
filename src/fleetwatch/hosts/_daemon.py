"""``fleetwatch host``: one daemon per machine that carries out its orders.

It reports the host to the registry (address, labels, slots, GPUs, what runs), follows its
own order feed with a blocking query, and carries each order out once: a start order becomes
a detached ``fleetwatch agent`` running a launch profile of this host's configuration (the
same agent as ``fleetwatch agent``, not a copy of it), a stop order a SIGTERM to that agent,
which drains first. It reports every step on the order. Everything runs in three supervised
loops; the instances outlive the daemon, which adopts them again when it restarts.

A stop order may also name an instance no host launched, registered at this host's address
(an agent started by hand, before this host ran a daemon): the daemon sets it ``draining``
through the registry, so its agent drains and exits, and reports the order stopped once the
instance has left the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fleetwatch import __version__
from fleetwatch._supervisor import Supervisor
from fleetwatch.errors import Conflict, RegistryError
from fleetwatch.hosts._client import HostsClient
from fleetwatch.hosts._local import (
    InstanceTable,
    LocalInstance,
    log_tail,
    process_matches,
    signal_instance,
    spawn_detached,
)
from fleetwatch.hosts._model import (
    TEMPLATE_META,
    Host,
    Order,
    OrderAction,
    OrderState,
    check_name,
)
from fleetwatch.hosts._profiles import LaunchProfile, OrderRefused, find_profile
from fleetwatch.registry._model import CheckType, Instance, InstanceStatus
from fleetwatch.security._auth import TOKEN_ENV

log = logging.getLogger("fleetwatch.host")

#: How long one blocking query for orders waits before asking again.
ORDER_WAIT_S = 30.0
#: How often the daemon looks at its instances (alive? available yet? stopped?).
WATCH_EVERY_S = 0.5
#: A stopping agent gets its drain and this much more before SIGKILL.
STOP_GRACE_S = 60.0
#: An instance with no agent (judged by the registry's probes) is deregistered this long
#: after it was set draining: long enough for clients to have seen it go.
UNMANAGED_PROPAGATION_S = 2.0


@dataclass(frozen=True, slots=True)
class HostSettings:
    """What ``fleetwatch host`` runs with (from ``host.toml``)."""

    host_id: str
    address: str
    registry_url: str | None
    token: str | None
    state_dir: Path
    profiles: Mapping[str, LaunchProfile] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    capacity: int = 1
    ttl: float = 10.0
    #: The variable the daemon read its token from: not passed on to what it launches.
    token_env: str = TOKEN_ENV
    #: What runs an instance's agent, before its options: ``fleetwatch agent`` (this
    #: Python's); the fleet benchmark puts a stand-in for a pooled agent here.
    agent_command: tuple[str, ...] = (sys.executable, "-m", "fleetwatch", "agent")

    def __post_init__(self) -> None:
        check_name(self.host_id, "host id")


@dataclass
class _Tracked:
    """An order carried out and not finished yet: what the watch loop waits for."""

    order: Order
    instance_id: str
    deadline: float
    #: What the deadline allowed, in seconds (said when it passes).
    within: float = 0.0
    #: A stop of an instance no host launched: (its registration, when it was set draining).
    stray: tuple[Instance, float] | None = None


def gpu_count() -> int:
    """GPUs NVML sees (0 without the ``gpu`` extra or an NVIDIA driver)."""
    try:
        import pynvml  # noqa: PLC0415 - the gpu extra, optional

        pynvml.nvmlInit()
    except Exception:
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def instance_id_for(order: Order) -> str:
    """The instance a start order starts: as ordered, or one derived from the order id (so
    the same order always names the same instance)."""
    if order.instance_id:
        return order.instance_id
    digest = hashlib.sha256(f"{order.host_id}/{order.order_id}".encode()).hexdigest()[:8]
    return f"{order.service}-{digest}"[:63]


class HostDaemon:
    """One host's daemon. ``await run()`` until :meth:`request_stop`; instances stay up."""

    def __init__(self, settings: HostSettings, *, client: HostsClient | None = None) -> None:
        self.settings = settings
        self.client = client or HostsClient(settings.registry_url, token=settings.token)
        self.table = InstanceTable(settings.state_dir)
        self.gpus = 0  # read in run(): NVML blocks
        self._tracked: dict[str, _Tracked] = {}
        self._stop = asyncio.Event()
        self._failure: BaseException | None = None
        self._loops = Supervisor("host", detail=settings.host_id, on_fail=self._on_fail)
        #: Orders refused or failed here, by id: the feed may hand them over again.
        self._done: set[str] = set()
        #: Instances whose agent exited, kept until the order that started them is told.
        self._exited: dict[str, LocalInstance] = {}
        #: Instances whose agent exited while the daemon was down (drained through the
        #: registry, say): a stop order for one is already carried out.
        self._gone: set[str] = set()

    # -- life -------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def _on_fail(self, name: str, exc: BaseException) -> None:
        self._failure = exc
        self._stop.set()

    async def run(self, *, handle_signals: bool = True) -> int:
        """Adopt what runs, report, follow orders; 0 when asked to stop, 70 if a loop failed."""
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
        # Off the event loop: NVML, and a scan of /proc for each record, block.
        self.gpus = await asyncio.to_thread(gpu_count)
        adopted, gone = await asyncio.to_thread(self.table.adopt)
        for instance in adopted:
            log.info("host.adopted %s pid=%d (%s)", instance.instance_id, instance.pid,
                     instance.fleetwatch_version or "unknown version")  # fmt: skip
        for instance in gone:
            log.info("host.gone %s: exited while the daemon was down", instance.instance_id)
            self._gone.add(instance.instance_id)
        self._loops.start("report", self._report_loop, max_backoff=self.settings.ttl / 3)
        self._loops.start("orders", self._order_loop, max_backoff=5.0)
        self._loops.start("watch", self._watch_loop, max_backoff=2.0)
        try:
            await self._stop.wait()
        finally:
            await self._loops.aclose()
            await self.client.aclose()
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        if self._failure is not None:
            log.error("host.failed %s: %r", self.settings.host_id, self._failure)
            return 70
        log.info("host.stopped %s: %d instances run on", self.settings.host_id, len(self.table))
        return 0

    # -- reporting --------------------------------------------------------------------------

    def host_record(self) -> Host:
        s = self.settings
        return Host(
            host_id=s.host_id,
            address=s.address,
            labels=dict(s.labels),
            capacity=s.capacity,
            gpus=self.gpus,
            version=__version__,
            instances={i.instance_id: i.service for i in self.table},
        )

    async def report_now(self) -> None:
        await self.client.report_host(self.host_record(), self.settings.ttl)

    async def _report_loop(self) -> None:
        while True:
            try:
                await self.report_now()
            except RegistryError as exc:
                log.warning("host.report_failed %s: %s", self.settings.host_id, exc)
            await asyncio.sleep(self.settings.ttl / 3)

    async def _tell(self, order: Order, state: OrderState, reason: str = "", iid: str = "") -> None:
        log.info("host.order %s %s %s%s", order.order_id, order.action.value, state.value,
                 f": {reason}" if reason else "")  # fmt: skip
        await self.client.report(self.settings.host_id, order.order_id, state, reason, iid)

    # -- orders -----------------------------------------------------------------------------

    async def _order_loop(self) -> None:
        index: int | None = None
        while True:
            try:
                # The first read takes every order the feed holds: some may be unfinished.
                if index is None:
                    current, orders = await self.client.orders(self.settings.host_id)
                else:
                    current, orders = await self.client.orders(
                        self.settings.host_id, index=index, wait=ORDER_WAIT_S
                    )
            except RegistryError as exc:
                log.warning("host.orders_unreadable %s: %s", self.settings.host_id, exc)
                await asyncio.sleep(1.0)
                continue
            if index is not None and current < index:
                index = None  # the registry's feed restarted: read it whole again
                continue
            unfinished = False
            for order in orders:
                unfinished |= not await self.carry_out(order)
            # The feed answers with the orders changed since an index, and an order whose
            # report failed has not changed: the next read takes the whole feed again, after
            # a pause, so that order is carried out again instead of waiting for ever.
            index = None if unfinished else current
            if unfinished:
                await asyncio.sleep(1.0)

    async def carry_out(self, order: Order) -> bool:
        """Carry one order out as far as it goes now (the watch loop finishes it); False when
        the registry or the system failed it on the way, so it is to be tried again."""
        if order.state.finished or order.order_id in self._tracked or order.order_id in self._done:
            return True
        try:
            try:
                if order.action is OrderAction.START:
                    await self._start(order)
                else:
                    await self._stop_instance(order)
            except OrderRefused as exc:
                await self._tell(order, OrderState.REFUSED, str(exc))
                self._done.add(order.order_id)
        except (OSError, RegistryError) as exc:
            log.warning("host.order_error %s: %s", order.order_id, exc)
            self._done.discard(order.order_id)  # its report did not land: tell it again
            return False
        return True

    async def _start(self, order: Order) -> None:
        s = self.settings
        running = self.table.by_order(order.order_id)
        if running is not None:  # carried out before (this daemon, or one before it)
            if order.state in (OrderState.PENDING, OrderState.ACCEPTED):
                await self._tell(order, OrderState.STARTED, iid=running.instance_id)
            profile = s.profiles.get(running.profile)
            timeout = profile.ready_timeout if profile else 600.0
            self._track(order, running.instance_id, timeout)
            return
        if order.state not in (OrderState.PENDING, OrderState.ACCEPTED):
            self._done.add(order.order_id)
            await self._tell(order, OrderState.FAILED, "its instance no longer runs on this host")
            return
        profile = find_profile(s.profiles, order.profile)
        # Off the event loop: resolving paths may touch a slow (network) file system.
        command = await asyncio.to_thread(profile.render, order.params, address=s.address)
        if len(self.table) >= s.capacity:
            raise OrderRefused(f"no free slot: {len(self.table)} of {s.capacity} in use")
        instance_id = instance_id_for(order)
        if self.table.get(instance_id) is not None:
            raise OrderRefused(f"instance {instance_id!r} already runs on this host")
        await self._tell(order, OrderState.ACCEPTED, iid=instance_id)
        launched = self._launch(order, profile, command, instance_id)
        log.info("host.launched %s pid=%d for order %s", instance_id, launched.pid, order.order_id)
        await self.report_now()
        await self._tell(order, OrderState.STARTED, f"agent pid {launched.pid}", instance_id)
        self._track(order, instance_id, profile.ready_timeout)

    def _launch(
        self, order: Order, profile: LaunchProfile, command: tuple[str, ...], instance_id: str
    ) -> LocalInstance:
        s = self.settings
        log_path = self.table.log_path(instance_id)
        planned = LocalInstance(
            instance_id=instance_id,
            service=order.service,
            order_id=order.order_id,
            profile=profile.name,
            version=order.version,
            log=str(log_path),
            fleetwatch_version=__version__,
        )
        self.table.record(planned)  # before the spawn: a crash in between is found again
        agent = [
            *s.agent_command,
            "--service", order.service,
            "--upstream", f"http://{s.address}:{{port}}",
            "--kind", profile.kind,
            "--instance-id", instance_id,
            f"--version={order.version}",
            "--listen", f"{s.address}:0",
            "--meta", f"host_id={s.host_id}",
            "--meta", f"order_id={order.order_id}",
            "--meta", f"profile={profile.name}",
            "--meta", f"{TEMPLATE_META}={order.template}",
        ]  # fmt: skip
        if s.registry_url:
            agent += ["--registry", s.registry_url]
        if profile.model:
            agent += ["--model", profile.model]
        if profile.user:
            agent += ["--run-as", profile.user]
        agent += [*profile.agent_args, "--", *command]
        # The agent gets the host's token as FLEETWATCH_TOKEN (and strips it from its server's
        # environment); the variable the daemon read it from is not passed on.
        env = {k: v for k, v in os.environ.items() if k not in (s.token_env, TOKEN_ENV)}
        if s.token:
            env[TOKEN_ENV] = s.token
        try:
            pid = spawn_detached(agent, env, log_path)
        except OSError:
            self.table.forget(instance_id)
            raise
        return self.table.started(planned, pid)

    async def _stop_instance(self, order: Order) -> None:
        running = self.table.get(order.instance_id)
        if running is None and await self._drain_stray(order):
            return
        if running is None:
            self._done.add(order.order_id)
            # It went while the daemon was down: mid-stop, or on its own.
            if order.state is OrderState.STOPPING or order.instance_id in self._gone:
                await self._tell(order, OrderState.STOPPED, "it had exited")
            else:
                await self._tell(
                    order, OrderState.FAILED, f"no instance {order.instance_id!r} runs here"
                )
            return
        if order.state is not OrderState.STOPPING:
            await self._tell(order, OrderState.ACCEPTED)
            await self._tell(order, OrderState.STOPPING, "draining")
        signal_instance(running, signal.SIGTERM)  # the agent drains, then stops its server
        self._track(order, running.instance_id, STOP_GRACE_S)

    async def _drain_stray(self, order: Order) -> bool:
        """Drain an instance no host launched, registered at this host's address, through
        the registry; whether there was one."""
        _, instances = await self.client.instances(order.service)
        found = next((i for i in instances if i.instance_id == order.instance_id), None)
        if found is None or found.host != self.settings.address:
            return False
        if order.state is not OrderState.STOPPING:
            await self._tell(order, OrderState.ACCEPTED)
            await self._tell(order, OrderState.STOPPING, "draining through the registry")
        await self.client.set_status(order.service, order.instance_id, InstanceStatus.DRAINING)
        self._track(order, order.instance_id, STOP_GRACE_S)
        self._tracked[order.order_id].stray = (found, time.monotonic())
        return True

    def _track(self, order: Order, instance_id: str, within: float) -> None:
        self._tracked[order.order_id] = _Tracked(
            order, instance_id, time.monotonic() + within, within
        )

    # -- watching ---------------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        while True:
            await self.watch_once()
            await asyncio.sleep(WATCH_EVERY_S)

    async def watch_once(self) -> None:
        """Forget instances that exited, and move tracked orders on."""
        # The records are taken here, on the loop that writes them; a record without a pid
        # is an agent being spawned right now, not one that exited. (Taken for exited, its
        # pid 0 made killpg(0) below end the daemon's own process group: the fleet
        # benchmark lost host daemons that way, right after a launch.)
        launched = [i for i in self.table if i.pid > 0]
        # Off the event loop: each check reads /proc (and reaps a child of ours).
        exited = await asyncio.to_thread(
            lambda: [i for i in launched if not process_matches(i.pid, i.create_time)]
        )
        for instance in exited:
            if self.table.get(instance.instance_id) != instance:
                continue  # its record changed meanwhile (a new spawn under the same id)
            # An agent that died may leave its server running in its session: end it too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(instance.pid, signal.SIGKILL)
            self.table.forget(instance.instance_id)
            self._exited[instance.instance_id] = instance
        if exited:
            with contextlib.suppress(RegistryError):
                await self.report_now()
        gone = self._exited
        statuses, unread = await self._registry_statuses()
        now = time.monotonic()
        for order_id, tracked in list(self._tracked.items()):
            order, iid = tracked.order, tracked.instance_id
            try:
                if order.action is OrderAction.START:
                    await self._watch_start(tracked, gone.get(iid), statuses.get(iid), now)
                elif tracked.stray is not None:
                    if order.service not in unread:  # gone only if the registry says so
                        await self._watch_stray(tracked, iid in statuses, now)
                elif self.table.get(iid) is None:
                    await self._tell(order, OrderState.STOPPED, "drained and stopped")
                    self._finish(order_id)
                elif now > tracked.deadline:
                    running = self.table.get(iid)
                    if running is not None:
                        signal_instance(running, signal.SIGKILL)
                    tracked.deadline = now + STOP_GRACE_S
            except Conflict as exc:
                # The order has ended already (a report whose reply was lost had landed):
                # asking again every pass would only be refused again.
                log.warning("host.report_refused %s: %s; no longer followed", order_id, exc)
                self._finish(order_id)
            except RegistryError as exc:
                log.warning("host.report_failed %s: %s", order_id, exc)

    async def _watch_start(
        self,
        tracked: _Tracked,
        exited: LocalInstance | None,
        status: InstanceStatus | None,
        now: float,
    ) -> None:
        order, iid = tracked.order, tracked.instance_id
        if exited is not None:
            tail = log_tail(exited.log)
            await self._tell(order, OrderState.FAILED, f"the agent exited: {tail}", iid)
            self._finish(order.order_id)
            self._exited.pop(iid, None)
        elif status is InstanceStatus.AVAILABLE:
            await self._tell(order, OrderState.AVAILABLE, iid=iid)
            self._finish(order.order_id)
        elif now > tracked.deadline:
            running = self.table.get(iid)
            if running is not None:
                signal_instance(running, signal.SIGTERM)
            reason = f"not available within {tracked.within:g}s"
            await self._tell(order, OrderState.FAILED, reason, iid)
            self._finish(order.order_id)

    async def _watch_stray(self, tracked: _Tracked, registered: bool, now: float) -> None:
        """A drained instance no host launched: stopped once it has left the registry (one
        without an agent is deregistered after the propagation delay)."""
        assert tracked.stray is not None
        instance, drained_at = tracked.stray
        order = tracked.order
        agentless = instance.check.type is not CheckType.TTL
        if registered and agentless and now - drained_at > UNMANAGED_PROPAGATION_S:
            await self.client.deregister(order.service, instance.instance_id, tombstone=False)
            registered = False
        if not registered:
            await self._tell(order, OrderState.STOPPED, "drained and left the registry")
            self._finish(order.order_id)
        elif now > tracked.deadline:
            await self._tell(order, OrderState.FAILED, "still registered after its drain")
            self._finish(order.order_id)

    def _finish(self, order_id: str) -> None:
        self._tracked.pop(order_id, None)
        self._done.add(order_id)

    async def _registry_statuses(self) -> tuple[dict[str, InstanceStatus], set[str]]:
        """The registry's status of each instance a start (or a stray's stop) waits for, and
        the services it could not read."""
        waited: dict[str, set[str]] = {}
        for t in self._tracked.values():
            if t.order.action is OrderAction.START or t.stray is not None:
                waited.setdefault(t.order.service, set()).add(t.instance_id)
        found: dict[str, InstanceStatus] = {}
        unread: set[str] = set()
        for service, ids in waited.items():
            try:
                # Only these: 100 hosts reading a 400-instance service twice a second each
                # made the registry node serialise megabytes a second for a rollout.
                _, instances = await self.client.instances(service, instance_ids=sorted(ids))
            except RegistryError:
                unread.add(service)
                continue
            found.update({i.instance_id: i.status for i in instances})
        return found, unread
