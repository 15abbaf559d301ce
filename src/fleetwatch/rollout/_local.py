"""A rollout on one machine: the fleet's deployment controller, with this machine as its
only host.

``fleetwatch rollout --launch CMD --version V`` runs a host daemon for this machine while it
lasts, writes the service's deployment record (placed on this machine, by its host label)
to the registry, and follows what the registry's controller does: starts under surge, waits
for ``available``, drains the old instances (those no host launched too, through the
registry), and stops what never became ready. The record, its revisions and its progress
stay in the registry, so ``fleetwatch rollout status`` shows it, and a rollout killed
midway is carried on by the controller (the instances outlive this command; the next local
rollout's daemon adopts them).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleetwatch.deployments._client import DeploymentsClient
from fleetwatch.deployments._model import CanaryStep, Deployment, DeploymentSpec, Phase
from fleetwatch.errors import InstanceNotFound, RegistryError
from fleetwatch.hosts._client import HostsClient
from fleetwatch.hosts._daemon import HostDaemon
from fleetwatch.hosts._model import Order, OrderAction, OrderState
from fleetwatch.hosts._profiles import LaunchProfile
from fleetwatch.registry._model import Instance, InstanceStatus
from fleetwatch.rollout._machine import LOCAL_LABEL, MachineProfiles, host_settings, state_dir
from fleetwatch.rollout._plan import RolloutFailed, RolloutSettings

POLL_S = 0.5
#: How long the registry may go without a leading controller before the rollout says so.
NO_LEADER_S = 15.0
#: The daemon's first report, before the record is written (so the controller sees a host).
HOST_UP_S = 10.0


@dataclass
class RolloutReport:
    """What happened, for people (the log lines) and scripts (``--json``)."""

    service: str
    version: str
    revision: int = 0
    ok: bool = False
    reason: str = ""
    started: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    canary: dict[str, Any] | None = None
    duration_s: float = 0.0


class Rollout:
    """``await Rollout(settings).run()`` returns the report; it raises nothing on a failed
    rollout (the report says why), only on an unreachable registry."""

    def __init__(self, settings: RolloutSettings, *, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.say = say
        self.report = RolloutReport(settings.service, settings.version or "")
        self._seen: dict[str, OrderState] = {}

    async def run(self) -> RolloutReport:
        began = time.monotonic()
        s = self.settings
        profiles = MachineProfiles(state_dir(s))
        profile = profiles.add(s) if s.launch else None
        daemon = HostDaemon(host_settings(s, profiles.load()))
        async with (
            DeploymentsClient(s.registry_url, token=s.token) as api,
            HostsClient(s.registry_url, token=s.token) as hosts,
        ):
            # The spec is worked out before the daemon starts: a bad request runs nothing.
            current, instances = await self._current(api, hosts)
            spec = self._target(current, instances, profiles.load(), profile)
            host = asyncio.create_task(daemon.run(handle_signals=False), name="local-host")
            try:
                await self._until_host_up(hosts, host)
                before = {o.order_id for o in (await hosts.orders(s.host_id))[1]}
                self._seen = dict.fromkeys(before, OrderState.PENDING)
                written = await self._write(api, spec)
                self.report.revision, self.report.version = written.revision, written.spec.version
                self.say(self._opening(written, instances))
                final = await self._follow(api, hosts, daemon, host, written.revision)
                await self._until_orders_end(hosts, daemon, host, before)
                self._conclude(final, written.revision)
                self._tally(await self._orders(hosts, before), daemon)
            except RolloutFailed as exc:
                self.report.reason = str(exc)
            finally:
                daemon.request_stop()
                try:
                    async with asyncio.timeout(30):
                        await host
                except Exception as exc:  # the daemon's crash is said, never lost
                    failed = f"this machine's host daemon failed: {exc!r}"
                    self.report.reason = self.report.reason or failed
            if self.report.reason:
                self.say(f"rollout stopped: {self.report.reason}")
            _, now = await hosts.instances(s.service)
            self.report.versions = {i.instance_id: i.version for i in now}
        self.report.duration_s = round(time.monotonic() - began, 2)
        return self.report

    # -- what to write ------------------------------------------------------------------------

    async def _current(
        self, api: DeploymentsClient, hosts: HostsClient
    ) -> tuple[Deployment | None, list[Instance]]:
        try:
            current: Deployment | None = await api.deployment(self.settings.service)
        except InstanceNotFound:
            current = None
        _, instances = await hosts.instances(self.settings.service)
        return current, instances

    def _target(
        self,
        current: Deployment | None,
        instances: list[Instance],
        profiles: dict[str, LaunchProfile],
        profile: LaunchProfile | None,
    ) -> DeploymentSpec:
        """The spec to write (for an undo: the one it goes back to, checked here)."""
        s = self.settings
        if s.undo:
            if current is None or not current.history:
                raise RolloutFailed(f"{s.service} has no earlier revision to go back to")
            revision = s.to_revision or current.history[0][0]
            try:
                spec = current.spec_at(revision)
            except KeyError as exc:
                raise RolloutFailed(str(exc.args[0])) from None
            if spec.profile not in profiles:
                raise RolloutFailed(
                    f"revision {revision} runs launch profile {spec.profile!r}, which this "
                    f"machine has not recorded (in {state_dir(s)}): undo it where it was rolled"
                )
            return spec
        serving = [i for i in instances if i.status is not InstanceStatus.DRAINING]
        replicas = s.replicas
        if replicas is None:
            replicas = current.spec.replicas if current is not None else max(1, len(serving))
        canary = None
        if s.canary:
            assert s.gateway_url is not None
            canary = CanaryStep(
                gateway_url=s.gateway_url,
                soak_s=s.canary_soak,
                max_error_increase=s.canary_max_error_increase,
                max_latency_ratio=s.canary_max_latency_ratio,
            )
        assert s.version is not None
        assert profile is not None
        return DeploymentSpec(
            service=s.service,
            profile=profile.name,
            version=s.version,
            replicas=replicas,
            placement={LOCAL_LABEL: s.host_id},
            spread=False,
            max_surge=str(s.max_surge),
            max_unavailable=str(s.max_unavailable),
            ready_deadline_s=s.ready_timeout,
            progress_deadline_s=max(60.0, 2 * s.ready_timeout),
            canary=canary,
        )

    async def _write(self, api: DeploymentsClient, spec: DeploymentSpec) -> Deployment:
        if self.settings.undo:
            return await api.undo(self.settings.service, self.settings.to_revision)
        return await api.apply(spec)

    def _opening(self, written: Deployment, instances: list[Instance]) -> str:
        s, spec = self.settings, written.spec
        old = sorted({i.version or "?" for i in instances if i.version != spec.version})
        start = f"from {', '.join(old)} " if old else ""
        return (
            f"rolling {s.service} {start}to {spec.version} on {s.host_id} (revision "
            f"{written.revision}): {spec.replicas} instance(s), surge {spec.max_surge}, "
            f"unavailable {spec.max_unavailable}"
        )

    # -- following ----------------------------------------------------------------------------

    async def _until_host_up(self, hosts: HostsClient, host: asyncio.Task[int]) -> None:
        async with asyncio.timeout(HOST_UP_S):
            while True:
                self._check_daemon(host)
                with contextlib.suppress(InstanceNotFound):
                    await hosts.host(self.settings.host_id)
                    return
                await asyncio.sleep(0.1)

    @staticmethod
    def _check_daemon(host: asyncio.Task[int]) -> None:
        if host.done():
            problem = host.exception() if not host.cancelled() else None
            raise RolloutFailed(f"this machine's host daemon stopped ({problem or host.result()})")

    async def _follow(
        self,
        api: DeploymentsClient,
        hosts: HostsClient,
        daemon: HostDaemon,
        host: asyncio.Task[int],
        revision: int,
    ) -> Deployment:
        """The record once this revision's rollout ends (or a later revision undid it)."""
        s = self.settings
        index: int | None = None
        said, leaderless_since = "", time.monotonic()
        async with asyncio.timeout(max(120.0, 2 * s.ready_timeout) + s.drain_wait + 60):
            while True:
                self._check_daemon(host)
                index, found, leader = await api.deployments(index=index, wait=POLL_S)
                await self._narrate(hosts, daemon)
                if leader is not None:
                    leaderless_since = time.monotonic()
                elif time.monotonic() - leaderless_since > NO_LEADER_S:
                    raise RolloutFailed(
                        f"no controller has led for {NO_LEADER_S:g}s: is `fleetwatch serve` "
                        "running, without --no-controller?"
                    )
                mine = next((d for d in found if d.service == s.service), None)
                if mine is None:
                    raise RolloutFailed(f"the deployment of {s.service} was removed")
                if mine.revision != revision:
                    return mine
                line = mine.progress.message
                if line and line != said:
                    self.say(line)
                    said = line
                if mine.progress.phase in (Phase.COMPLETE, Phase.FAILED) or mine.paused:
                    return mine

    async def _orders(self, hosts: HostsClient, before: set[str]) -> list[Order]:
        """This rollout's orders on this machine's feed."""
        _, feed = await hosts.orders(self.settings.host_id)
        return [o for o in feed if o.order_id not in before]

    async def _narrate(self, hosts: HostsClient, daemon: HostDaemon) -> list[Order] | None:
        """Say each order's steps as this machine carries them out; the feed it read (None
        when it could not be read)."""
        try:
            _, feed = await hosts.orders(self.settings.host_id)
        except RegistryError:
            return None
        for order in feed:
            if self._seen.get(order.order_id) is order.state:
                continue
            self._seen[order.order_id] = order.state
            running = daemon.table.get(order.instance_id) if order.instance_id else None
            if running is not None and running.pid:
                self.report.pids[order.instance_id] = running.pid
                self.report.logs[order.instance_id] = running.log
            line = _order_line(order, running.pid if running else 0)
            if line:
                self.say(line)
        return feed

    async def _until_orders_end(
        self, hosts: HostsClient, daemon: HostDaemon, host: asyncio.Task[int], before: set[str]
    ) -> None:
        """Wait (up to ``drain_wait``) until this rollout's stops and starts are finished:
        the drained instances have left, what failed has exited."""
        deadline = time.monotonic() + self.settings.drain_wait
        while time.monotonic() < deadline:
            self._check_daemon(host)
            feed = await self._narrate(hosts, daemon)
            mine = [o for o in feed or () if o.order_id not in before]
            if feed is not None and all(
                o.state.finished or o.state is OrderState.AVAILABLE for o in mine
            ):
                return
            await asyncio.sleep(POLL_S)
        raise RolloutFailed(f"the old instances did not leave within {self.settings.drain_wait:g}s")

    def _conclude(self, final: Deployment, revision: int) -> None:
        progress = final.progress
        self.report.canary = dict(progress.canary_figures or {}) or None
        if final.revision != revision:
            undone = progress.note.startswith(f"revision {revision} undone: ")
            self.report.reason = (
                progress.note.split(": ", 1)[1]
                if undone
                else f"revision {final.revision} was written while revision {revision} rolled"
            )
            return
        if final.paused:
            self.report.reason = "paused (fleetwatch rollout resume carries it on)"
        elif progress.phase is Phase.FAILED:
            self.report.reason = progress.message
        else:
            self.report.ok = True
            self.say(f"done: {final.service} runs version {final.spec.version}")

    def _tally(self, orders: list[Order], daemon: HostDaemon) -> None:
        started = [o for o in orders if o.action is OrderAction.START and o.instance_id]
        self.report.started = [o.instance_id for o in started]
        failed = {o.instance_id for o in started if o.state is not OrderState.AVAILABLE}
        stops = {o.instance_id for o in orders if o.action is OrderAction.STOP}
        self.report.stopped = [i for i in self.report.started if i in failed or i in stops]
        self.report.retired = sorted(stops - set(self.report.started))
        for iid in self.report.started:
            self.report.logs.setdefault(iid, str(daemon.table.log_path(iid)))


def _order_line(order: Order, pid: int) -> str:
    iid = order.instance_id or order.order_id
    if order.action is OrderAction.START:
        return {
            OrderState.STARTED: f"started {iid} (pid {pid})" if pid else f"started {iid}",
            OrderState.AVAILABLE: f"{iid} is available",
            OrderState.FAILED: f"{iid} failed: {order.reason}",
            OrderState.REFUSED: f"start refused: {order.reason}",
        }.get(order.state, "")
    return {
        OrderState.STOPPING: f"draining {iid}",
        OrderState.STOPPED: f"{iid} has left",
        OrderState.FAILED: f"stopping {iid} failed: {order.reason}",
    }.get(order.state, "")
