"""The rollout itself: surge, wait until available, drain the old, wait until gone, repeat.

With ``max_surge`` > 0 each step starts new instances first and retires old ones only once the
new ones are ``available``, so capacity never drops; with ``max_surge`` 0 it retires first
(``max_unavailable`` at a time). A new instance that is not available by ``ready_timeout``, or
a canary that does worse than the old version, stops the rollout: the new instances are
drained away, no further old one is touched, and the service keeps serving on what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from fleetwatch.discovery._registry_client import RegistryClient
from fleetwatch.errors import RegistryError
from fleetwatch.registry._model import CheckType, Instance, InstanceStatus
from fleetwatch.rollout._launcher import Launched, alive, launch
from fleetwatch.rollout._plan import META_TEMPLATE, RolloutFailed, RolloutSettings

POLL_S = 0.2
#: An instance without an agent is deregistered by the rollout after this propagation delay.
UNMANAGED_PROPAGATION_S = 2.0
#: The fewest canary requests that say anything about its error rate.
CANARY_MIN_REQUESTS = 10
#: Failures that condemn a canary whatever its request count.
CANARY_MIN_FAILURES = 3


@dataclass
class RolloutReport:
    """What happened, for people (the log lines) and scripts (``--json``)."""

    service: str
    version: str
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
        self.report = RolloutReport(settings.service, settings.version)

    async def run(self) -> RolloutReport:
        started = time.monotonic()
        s = self.settings
        async with RegistryClient(s.registry_url, token=s.token) as api:
            try:
                await self._run(api)
                self.report.ok = True
            except RolloutFailed as exc:
                self.report.reason = str(exc)
                self.say(f"rollout stopped: {exc}")
            _, instances = await api.instances(s.service)
            self.report.versions = {i.instance_id: i.version for i in instances}
        self.report.duration_s = round(time.monotonic() - started, 2)
        return self.report

    async def _run(self, api: RegistryClient) -> None:
        s = self.settings
        _, current = await api.instances(s.service)
        old = [i for i in current if i.version != s.version]
        if not old:
            self.say(f"nothing to do: every instance of {s.service} runs version {s.version}")
            return
        previous = (old[0].version, old[0].metadata.get(META_TEMPLATE, ""))
        self.say(
            f"rolling {s.service} from {previous[0] or '?'} to {s.version}: "
            f"{len(old)} instance(s), {s.batch} at a time "
            f"(surge {s.max_surge}, unavailable {s.max_unavailable})"
        )
        queue = list(old)
        step = 0
        while queue:
            batch, queue = queue[: s.batch], queue[s.batch :]
            step += 1
            if s.max_surge == 0:
                await self._retire(api, batch)
                await self._bring_up(api, len(batch), step, previous)
            else:
                new = await self._bring_up(api, len(batch), step, previous)
                if s.canary and step == 1:
                    await self._judge_canary(api, new, previous[0])
                await self._retire(api, batch)
        self.say(f"done: {s.service} runs version {s.version}")

    async def _bring_up(
        self, api: RegistryClient, count: int, step: int, previous: tuple[str, str]
    ) -> list[Launched]:
        new = [launch(self.settings, step, previous) for _ in range(count)]
        for one in new:
            self.report.started.append(one.instance_id)
            self.report.logs[one.instance_id] = str(one.log)
            self.report.pids[one.instance_id] = one.pid
            self.say(f"started {one.instance_id} (pid {one.pid}, log {one.log})")
        try:
            await self._wait_available(api, new)
        except RolloutFailed:
            await self._stop(api, new)
            raise
        return new

    async def _wait_available(self, api: RegistryClient, new: list[Launched]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.ready_timeout
        waiting = {one.instance_id: one for one in new}
        while waiting:
            _, instances = await api.instances(self.settings.service)
            status = {i.instance_id: i.status for i in instances}
            for iid in [i for i in waiting if status.get(i) is InstanceStatus.AVAILABLE]:
                self.say(f"{iid} is available")
                del waiting[iid]
            for iid, one in list(waiting.items()):
                if not alive(one.pid):
                    raise RolloutFailed(
                        f"{iid} exited before it was available; see {one.log}:\n{_tail(one.log)}"
                    )
            if waiting and loop.time() > deadline:
                names = ", ".join(f"{i} ({status.get(i, 'not registered')})" for i in waiting)
                raise RolloutFailed(
                    f"not available within {self.settings.ready_timeout:g}s: {names}"
                )
            if waiting:
                await asyncio.sleep(POLL_S)

    async def _retire(self, api: RegistryClient, batch: list[Instance]) -> None:
        """Drain the old instances and wait until they have left."""
        for old in batch:
            await api.set_status(old.service, old.instance_id, InstanceStatus.DRAINING)
            self.say(f"draining {old.instance_id} (version {old.version or '?'})")
        await asyncio.gather(*(self._gone(api, old) for old in batch))
        for old in batch:
            self.report.retired.append(old.instance_id)
            self.say(f"{old.instance_id} has left")

    async def _gone(self, api: RegistryClient, old: Instance) -> None:
        if old.check.type is not CheckType.TTL:  # no agent to drain it: do it here
            await asyncio.sleep(UNMANAGED_PROPAGATION_S)
            with contextlib.suppress(RegistryError):
                await api.deregister(old.service, old.instance_id, tombstone=False)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_wait
        while loop.time() < deadline:
            _, instances = await api.instances(old.service)
            if all(i.instance_id != old.instance_id for i in instances):
                return
            await asyncio.sleep(POLL_S)
        raise RolloutFailed(f"{old.instance_id} did not leave within {self.settings.drain_wait:g}s")

    async def _stop(self, api: RegistryClient, new: list[Launched]) -> None:
        """Take new instances away again: drain through the registry, then end their agents."""
        for one in new:
            with contextlib.suppress(RegistryError):
                await api.set_status(
                    self.settings.service, one.instance_id, InstanceStatus.DRAINING
                )
        await self._until_exited(new)
        for one in new:
            if alive(one.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(one.pid, signal.SIGTERM)
        # An agent that had not registered yet when it was told to drain (still starting its
        # server) drains on SIGTERM instead; its registration is removed once it has exited,
        # so that its last heartbeat cannot bring it back.
        await self._until_exited(new)
        for one in new:
            with contextlib.suppress(RegistryError):
                await api.deregister(self.settings.service, one.instance_id, tombstone=False)
            self.report.stopped.append(one.instance_id)
            self.say(f"stopped {one.instance_id}")

    async def _until_exited(self, launched: list[Launched]) -> None:
        """Wait, up to ``drain_wait``, for the agents of ``launched`` to exit."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_wait
        # Other processes (the agents) end on their own: polling is the honest wait.
        while any(alive(one.pid) for one in launched) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)

    async def _judge_canary(self, api: RegistryClient, new: list[Launched], old: str) -> None:
        s = self.settings
        self.say(f"canary: {new[0].instance_id} takes traffic for {s.canary_soak:g}s")
        await asyncio.sleep(s.canary_soak)
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            figures = (await client.get(f"{s.gateway_url}/v1/gateway/stats")).json()["versions"]
        mine, theirs = figures.get(s.version, {}), figures.get(old, {})
        self.report.canary = {"new": mine, "old": theirs}
        problem = _regression(mine, theirs, s)
        if problem:
            await self._stop(api, new)
            raise RolloutFailed(f"canary regressed: {problem}")
        ours, before = mine.get("error_rate", 0), theirs.get("error_rate", 0)
        self.say(f"canary ok: error rate {ours:.2%} against {before:.2%}")


def _regression(mine: dict[str, Any], theirs: dict[str, Any], s: RolloutSettings) -> str:
    requests = int(mine.get("requests", 0))
    failures = int(mine.get("failures", 0))
    error_new = float(mine.get("error_rate", 0.0))
    error_old = float(theirs.get("error_rate", 0.0))
    # A canary failing fast is ejected by the gateway and sees few requests: a few failures
    # already say enough.
    if failures >= CANARY_MIN_FAILURES and error_new > error_old + s.canary_max_error_increase:
        return f"error rate {error_new:.2%} against {error_old:.2%} for the old version"
    if requests < CANARY_MIN_REQUESTS:
        return f"only {requests} request(s) reached the canary; need {CANARY_MIN_REQUESTS}"
    if error_new > error_old + s.canary_max_error_increase:
        return f"error rate {error_new:.2%} against {error_old:.2%} for the old version"
    p99_new, p99_old = mine.get("latency_p99_s"), theirs.get("latency_p99_s")
    if p99_new and p99_old and p99_new > p99_old * s.canary_max_latency_ratio:
        return f"p99 latency {p99_new * 1000:.0f}ms against {p99_old * 1000:.0f}ms"
    return ""


def _tail(path: Any, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
