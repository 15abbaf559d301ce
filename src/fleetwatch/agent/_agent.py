"""``fleetwatch agent``: a sidecar that makes an unmodified LLM server a fleet member.

It registers the upstream with a ``ttl`` check (the registry's monitor then only checks that
the agent answers on its probe port), runs the LLM checks locally, and reports:

- status changes at once, in a heartbeat carrying its verdict; heartbeats renew the lease;
- load (waiting/running requests, KV-cache use, busy slots) on the registry's load channel,
  which never bumps the change index;
- its own probe endpoints (``/livez``, ``/readyz``, ``/health`` ...).

It stops on SIGTERM/SIGINT, when an operator sets the instance to ``draining`` (seen on the
change feed), when its child dies, or when an operator removes the instance (410). A drain:
say ``draining``, keep serving for the propagation delay, wait until nothing is in flight (or
the drain timeout), deregister, stop the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.responses import JSONResponse

from fleetwatch._supervisor import Policy, Supervisor
from fleetwatch.agent._child import ChildProcess
from fleetwatch.agent._settings import AgentSettings
from fleetwatch.agent._verdict import instance_status
from fleetwatch.discovery._heartbeat import Heartbeater
from fleetwatch.discovery._registry_client import RegistryClient
from fleetwatch.errors import RegistryError, RegistryUnavailable
from fleetwatch.health import HealthProbes, HealthScheduler
from fleetwatch.lifecycle import AppServer, HttpLimits
from fleetwatch.llm._check import LlmServer
from fleetwatch.observability._metrics import (
    AgentMetrics,
    HealthMetrics,
    TaskMetrics,
    metrics_route,
)
from fleetwatch.registry._model import CheckSpec, CheckType, InstanceStatus, Registration

log = logging.getLogger("fleetwatch.agent")
#: The exit status after a loop crash failed the agent (sysexits.h EX_SOFTWARE).
EXIT_CRASHED = 70
#: How often the drain looks at the upstream's in-flight count.
DRAIN_POLL_S = 0.2
#: A blocking query on the agent's own service waits at most this long per round.
WATCH_WAIT_S = 30.0
#: The probe server keeps an idle connection this much longer than the registry's check interval.
LIVEZ_KEEP_ALIVE_S = 5.0
#: A registry out of reach at start is asked again after this, doubling up to the max.
REGISTER_RETRY_FIRST_S = 0.5
REGISTER_RETRY_MAX_S = 5.0


class StopReason(StrEnum):
    """Why an agent began its drain-and-exit sequence."""

    #: SIGTERM or SIGINT.
    SIGNAL = "signal"
    #: The registry answered 410: an operator removed the instance.
    REMOVED = "removed"
    #: An operator set the instance to draining through the registry.
    DRAINING = "draining"
    #: One of the agent's loops whose policy is to fail the agent crashed.
    CRASHED = "crashed"
    #: The supervised server process exited by itself.
    CHILD_EXITED = "child_exited"
    #: The code that embeds the agent asked (a test, a host agent).
    REQUESTED = "requested"


@dataclass
class AgentState:
    """What the agent has done, for its endpoint, its logs and tests."""

    instance_id: str
    reported: InstanceStatus | None = None
    reported_output: str = ""
    ever_available: bool = False
    registrations: int = 0
    heartbeats: int = 0
    load_reports: int = 0
    stop_reason: StopReason | None = None
    #: What the reason was, in words (the signal's name, the child's exit code).
    stop_detail: str = ""
    drained_in_flight: float | None = None
    drain_timed_out: bool = False
    child_exit: int | None = None
    errors: list[str] = field(default_factory=list)


class Agent:
    """One agent for one upstream. ``await agent.run()`` returns the process exit code."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        registry: RegistryClient | None = None,
        child: ChildProcess | None = None,
    ) -> None:
        """``child``: the server, already started (see :func:`start_on_free_port`); by default
        the agent starts ``settings.command`` itself."""
        self.settings = settings
        self.state = AgentState(settings.resolved_instance_id())
        self._registry = registry or RegistryClient(
            settings.registry_url, token=settings.token, ca_bundle=settings.ca_bundle
        )
        self._own_registry = registry is None
        self.lease = Heartbeater(
            self._registry, settings.service, self.state.instance_id, self.registration
        )
        self.server = LlmServer(settings.llm)
        self.scheduler = HealthScheduler(self.server.checks())
        self.probes = HealthProbes(
            self.scheduler,
            service_id=f"{settings.service}/{self.state.instance_id}",
            version=settings.version or None,
        )
        if child is None and settings.command:
            child = ChildProcess(settings.command, user=settings.run_as)
        self.child = child
        self.metrics_registry = CollectorRegistry()
        HealthMetrics(self.scheduler, self.metrics_registry)
        TaskMetrics(self.metrics_registry)
        AgentMetrics(
            self.metrics_registry,
            load=lambda: self.server.load.as_load(),  # noqa: PLW0108 - server.load is replaced on every reading
            account=self.server.governor.account,
            status=lambda: self.state.reported.value if self.state.reported else None,
        )
        self._stop = asyncio.Event()
        self._report_lock = asyncio.Lock()
        self.loops = Supervisor(
            "agent",
            on_fail=lambda task, exc: self.request_stop(
                StopReason.CRASHED, f"{task}: {type(exc).__name__}: {exc}"
            ),
        )
        self.http: AppServer | None = None
        self.ready = asyncio.Event()  # registered and serving its probe endpoints
        self._started_at = 0.0

    # -- lifecycle -------------------------------------------------------------------------

    def request_stop(self, reason: StopReason, detail: str = "") -> None:
        """Begin the drain-and-exit sequence (idempotent; the first reason wins)."""
        if not self._stop.is_set():
            self.state.stop_reason, self.state.stop_detail = reason, detail
            log.info("agent.stopping %s: %s %s", self.state.instance_id, reason, detail)
            self._stop.set()

    async def run(self, *, handle_signals: bool = True) -> int:
        """Run until stopped; drain; return 0, or the child's exit code when it died first."""
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop, StopReason.SIGNAL, sig.name)
        self._started_at = loop.time()
        try:
            if self.child is not None and not self.child.started:
                await self.child.start()
            app = self.probes.asgi_app()
            app.add_route("/v1/agent", self._agent_endpoint, methods=["GET"])
            app.router.routes.append(metrics_route(self.metrics_registry))
            self.http = AppServer(
                app,
                host=self.settings.listen_host,
                port=self.settings.listen_port,
                tls=self.settings.tls,
                limits=self.server_limits(),
            )
            await self.http.start()
            if await self._register():
                self.scheduler.start()
                self.ready.set()
                # Reports, heartbeats, load and the operator watch restart after a crash
                # (the next round does the same work); the child watcher is how the agent
                # learns its server died, so its crash fails the agent, not leave it blind.
                self.loops.start("reporter", self._report_changes)
                self.loops.start("heartbeat", self._heartbeat)
                self.loops.start("load", self._publish_load)
                self.loops.start("watch", self._watch_operator)
                self.loops.start("child", self._watch_child, policy=Policy.FAIL)
                await self._stop.wait()
                await self._drain()
        finally:
            await self.loops.aclose()
            await self._shutdown()
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        if self.state.stop_reason is StopReason.CRASHED:
            return EXIT_CRASHED
        if self.state.stop_reason is not StopReason.CHILD_EXITED:
            return 0
        code = self.state.child_exit or 1
        return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell says

    async def _shutdown(self) -> None:
        if self.child is not None:
            code = await self.child.stop(self.settings.stop_timeout)
            if self.state.child_exit is None:
                self.state.child_exit = code
        await self.scheduler.aclose()
        await self.server.aclose()
        if self.http is not None:
            await self.http.aclose()
        if self._own_registry:
            await self._registry.aclose()

    def server_limits(self) -> HttpLimits:
        """The probe server's limits: an idle connection lives past the registry's next check
        of ``/livez``. The monitor keeps one connection open between checks and probes at once
        when it closes (the agent may have died), so a server closing it sooner (the default
        5 s) turned each slower check into a reconnect and an extra probe."""
        default = HttpLimits()
        return replace(
            default,
            keep_alive=max(default.keep_alive, self.settings.livez_every + LIVEZ_KEEP_ALIVE_S),
        )

    # -- registration and reports ------------------------------------------------------------

    def registration(self) -> Registration:
        """What the agent registers: the upstream, held by a ttl check on the agent's port."""
        s = self.settings
        assert self.http is not None
        metadata = {
            **s.metadata,
            "kind": s.llm.kind,
            "agent": f"{s.listen_host}:{self.http.port}",
        }
        if s.llm.model:
            metadata["model"] = s.llm.model
        if s.command:
            metadata["launch_command"] = " ".join(s.command)[:1000]
        return Registration(
            host=s.advertise_host or s.upstream_host,
            port=s.upstream_port,
            scheme=s.upstream_scheme,
            check=CheckSpec(
                type=CheckType.TTL,
                interval=s.livez_every,
                agent_port=self.http.port,
                agent_path="/livez",
                agent_scheme=self.http.scheme,
            ),
            tags=s.tags,
            metadata=metadata,
            version=s.version,
            weight=s.weight,
            ttl=s.ttl,
        )

    async def _register(self) -> bool:
        """Register, waiting out a registry that cannot be reached for up to
        ``register_within`` (restarting, or swamped by a whole fleet starting at once: giving
        up at once would fail a healthy server's start); False if asked to stop first. Past
        that, or any other refusal, is raised: a registry that is not there is an error."""
        delay = REGISTER_RETRY_FIRST_S
        give_up = asyncio.get_running_loop().time() + self.settings.register_within
        while True:
            try:
                await self.lease.register()
                break
            except RegistryUnavailable as exc:
                if asyncio.get_running_loop().time() + delay > give_up:
                    raise
                self._note_error(exc)
                log.warning("agent.register_retry %s: %s; again in %.1fs",
                            self.state.instance_id, exc, delay)  # fmt: skip
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
                if self._stop.is_set():
                    return False
                delay = min(delay * 2, REGISTER_RETRY_MAX_S)
        self.state.registrations = self.lease.registrations
        self.state.reported = InstanceStatus.STARTING
        log.info("agent.registered %s/%s", self.settings.service, self.state.instance_id)
        return True

    async def _send(self, status: InstanceStatus | None, output: str = "") -> None:
        """One heartbeat (with a verdict when ``status`` is given), by the one protocol."""
        async with self._report_lock:
            instance = await self.lease.beat(status, output)
            self.state.registrations = self.lease.registrations
            if self.lease.gone:
                self.request_stop(StopReason.REMOVED, "by an operator (410)")
                return
            if instance is None:  # registered again after a 404, with no verdict to resend
                self.state.reported = InstanceStatus.STARTING
                return
            self.state.heartbeats = self.lease.heartbeats
            if status is not None:
                self.state.reported, self.state.reported_output = status, output
            if instance.status is InstanceStatus.DRAINING:
                self.request_stop(StopReason.DRAINING, "set through the registry")

    def current_verdict(self) -> tuple[InstanceStatus, str]:
        """What the agent would report now."""
        if self.child is not None and not self.child.running:
            return InstanceStatus.UNAVAILABLE, "the server process exited"
        status, output = instance_status(
            self.scheduler.states(), ever_available=self.state.ever_available
        )
        if status is InstanceStatus.AVAILABLE:
            self.state.ever_available = True
        waited = asyncio.get_running_loop().time() - self._started_at
        if status is InstanceStatus.STARTING and waited > self.settings.startup_grace:
            return InstanceStatus.UNAVAILABLE, f"not ready after {waited:.0f}s: {output}"
        return status, output

    async def _report_changes(self) -> None:
        """Report a new verdict as soon as a check result changes it."""
        revision = 0
        while True:
            revision = await self.scheduler.wait_for_change(revision)
            status, output = self.current_verdict()
            if status is InstanceStatus.STARTING and self.state.reported is status:
                continue
            if status is not self.state.reported:
                try:
                    await self._send(status, output)
                except RegistryError as exc:
                    self._note_error(exc)

    async def _heartbeat(self) -> None:
        every = self.settings.ttl / 3
        while True:
            await asyncio.sleep(every)
            status, output = self.current_verdict()
            try:
                await self._send(None if status is InstanceStatus.STARTING else status, output)
            except RegistryError as exc:
                self._note_error(exc)

    async def _publish_load(self) -> None:
        last: dict[str, float] | None = None
        while True:
            await asyncio.sleep(self.settings.load_every)
            load = self.server.load.as_load()
            load["probe_tokens_total"] = float(self.server.governor.tokens_spent_total)
            if load == last:
                continue
            try:
                await self._registry.put_load(self.settings.service, self.state.instance_id, load)
                self.state.load_reports += 1
                last = load
            except RegistryError as exc:
                self._note_error(exc)

    async def _watch_operator(self) -> None:
        """Follow our own instance on the change feed: an operator's ``draining`` stops us."""
        index = 0
        while True:
            try:
                # Only our own record, and only once it is draining: the answer changes once,
                # so a rollout's thousand changes elsewhere in the service wake no reply here.
                index, instances = await self._registry.instances(
                    self.settings.service,
                    index=index,
                    wait=WATCH_WAIT_S,
                    status=[InstanceStatus.DRAINING],
                    instance_ids=[self.state.instance_id],
                )
            except RegistryError as exc:
                self._note_error(exc)
                await asyncio.sleep(1.0)
                continue
            mine = next((i for i in instances if i.instance_id == self.state.instance_id), None)
            if mine is not None and mine.status is InstanceStatus.DRAINING:
                self.request_stop(StopReason.DRAINING, "set through the registry")
                return

    async def _watch_child(self) -> None:
        if self.child is None or self.child.exited is None:
            return
        code = await asyncio.shield(self.child.exited)
        self.state.child_exit = code
        log.warning("agent.child_exited %s: exit %s", self.state.instance_id, code)
        with contextlib.suppress(RegistryError):
            await self._send(InstanceStatus.UNAVAILABLE, f"the server process exited ({code})")
        self.request_stop(StopReason.CHILD_EXITED, f"with {code}")

    def _note_error(self, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"[:300]
        self.state.errors = [*self.state.errors[-19:], message]
        log.warning("agent.registry_error %s", message)

    # -- drain -----------------------------------------------------------------------------

    async def _drain(self) -> None:
        s, service, iid = self.settings, self.settings.service, self.state.instance_id
        self.probes.start_draining()
        child_dead = self.child is not None and not self.child.running
        gone = self.state.stop_reason is StopReason.REMOVED
        if not gone and not child_dead:
            with contextlib.suppress(RegistryError):
                await self._registry.set_status(service, iid, InstanceStatus.DRAINING)
            log.info(
                "agent.draining %s: serving %.1fs more for propagation", iid, s.propagation_delay
            )
            await asyncio.sleep(s.propagation_delay)
            await self._wait_until_idle()
        if not gone:
            with contextlib.suppress(RegistryError):
                await self._registry.deregister(service, iid, tombstone=False)
            log.info("agent.deregistered %s/%s", service, iid)

    async def _wait_until_idle(self) -> None:
        """Until the upstream has nothing in flight, or the drain timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_timeout
        in_flight: float | None = None
        while loop.time() < deadline:
            try:
                load = await self.server.read_load()
            except Exception as exc:  # a dead upstream has nothing in flight
                log.info("agent.drain_load_unreadable %s", exc)
                in_flight = 0.0
                break
            in_flight = load.in_flight
            self.server.load = load
            if not in_flight:
                break
            await asyncio.sleep(DRAIN_POLL_S)
        else:
            self.state.drain_timed_out = True
            log.warning(
                "agent.drain_timeout %s: %s requests still in flight after %ss",
                self.state.instance_id,
                in_flight,
                self.settings.drain_timeout,
            )
        self.state.drained_in_flight = in_flight

    # -- endpoint ----------------------------------------------------------------------------

    async def _agent_endpoint(self, request: Any) -> Any:
        del request
        governor = self.server.governor
        return JSONResponse(
            {
                "service": self.settings.service,
                "instance_id": self.state.instance_id,
                "upstream": self.settings.llm.base_url,
                "kind": self.settings.llm.kind,
                "reported": self.state.reported.value if self.state.reported else None,
                "output": self.state.reported_output,
                "load": self.server.load.as_load(),
                **governor.account(),
                "heartbeats": self.state.heartbeats,
                "draining": self.probes.draining,
                "child_pid": self.child.pid if self.child else None,
                "errors": self.state.errors[-5:],
            }
        )
