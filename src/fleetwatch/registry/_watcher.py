"""One instance's watcher: probes it on its interval over a kept-open connection, judges
each result, and writes what changed.

The hot path (a passing probe with nothing to report) touches no store and allocates
little: counters live here as plain integers, and the wait between probes is one future with
one timer, which an idle-connection close resolves early.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING

from fleetwatch._supervisor import CRASHES
from fleetwatch.errors import RegistryUnavailable
from fleetwatch.registry._judge import judge
from fleetwatch.registry._model import CHECKED_STATUSES, CheckType, Instance, InstanceStatus
from fleetwatch.registry._prober import Prober, ProbeResult
from fleetwatch.registry._store import CheckRecord

if TYPE_CHECKING:
    from fleetwatch.registry._monitor import Monitor

log = logging.getLogger("fleetwatch.registry")

#: After a failure that has not yet made an instance unavailable, the next probe comes this
#: soon instead of a whole interval later.
FAST_RECHECK_S = 0.1
#: ... and this soon when the failure followed the instance's connection closing.
CLOSE_RECHECK_S = 0.01


class Watcher:
    """Probes one instance until cancelled.

    The hot path (a passing probe with nothing to report) touches no store and allocates
    little: counters live here as plain integers, and the wait between probes is one future
    with one timer, which an idle-connection close resolves early.
    """

    def __init__(self, monitor: Monitor, instance: Instance, *, spread: bool = False) -> None:
        self.monitor = monitor
        self.instance = instance
        self.failures = instance.consecutive_failures
        self.successes = instance.consecutive_successes
        self._wake: asyncio.Future[None] | None = None
        self.prober = self._prober(instance)
        self.last_write = 0.0
        self.suspect = False
        self.after_close = False
        # Watchers started together (a node starting, a resync taking over a dead node's share)
        # spread their first probes over one interval instead of all probing at once.
        self.first_delay = random.uniform(0, instance.check.interval) if spread else 0.0
        self.task = asyncio.create_task(
            self._run(), name=f"fleetwatch.watch.{instance.service}/{instance.instance_id}"
        )

    @property
    def agent_only(self) -> bool:
        """An agent-held instance: probe its agent, leave the verdict to the agent's reports."""
        return self.instance.check.type is CheckType.TTL

    def _prober(self, instance: Instance) -> Prober:
        check = instance.check
        path = None if check.type is CheckType.TCP else check.path
        port, scheme = instance.port, instance.scheme
        if check.type is CheckType.TTL and check.agent_port is not None:
            path, port, scheme = check.agent_path, check.agent_port, check.agent_scheme
        return Prober(
            instance.host,
            port,
            path=path,
            scheme=scheme,
            ca_bundle=self.monitor.settings.ca_bundle,
            on_close=self._closed,
            node=self.monitor.node_id,
            policy=self.monitor.settings.policy,
        )

    def wake(self) -> None:
        """Probe now."""
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _closed(self) -> None:
        # The idle connection closed: the process may have died. Probe now, and if that probe
        # fails without a verdict (a dying process's socket resets before it refuses), again
        # almost at once.
        self.after_close = True
        self.wake()

    def refresh(self, latest: Instance) -> None:
        """A newer copy from the store (an operator's status, a re-registration)."""
        target_changed = (latest.host, latest.port, latest.scheme, latest.check) != (
            self.instance.host,
            self.instance.port,
            self.instance.scheme,
            self.instance.check,
        )
        if target_changed:
            self.prober.close()
            self.prober = self._prober(latest)
            self.wake()
        if latest.status is not self.instance.status or target_changed:
            self.instance = latest

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        jitter = self.monitor.settings.jitter
        try:
            if self.first_delay:
                await asyncio.sleep(self.first_delay)
            while True:
                started = loop.time()
                result = await self.prober.probe(self.instance.check.timeout)
                self.monitor.probes += 1
                try:
                    await self._apply(result)
                except RegistryUnavailable as exc:
                    log.warning("registry.monitor_write_failed %s: %s", self.instance.key, exc)
                except Exception:  # keep probing; the next result may be written
                    log.exception("registry.monitor_apply_error %s", self.instance.key)
                wait = self.instance.check.interval * (1 - random.uniform(0, jitter))
                if self.suspect:
                    # HAProxy's "fastinter": while a failure is unconfirmed, look again soon.
                    wait = min(wait, CLOSE_RECHECK_S if self.after_close else FAST_RECHECK_S)
                self.after_close = False
                if started + wait > loop.time():
                    self._wake = loop.create_future()
                    handle = loop.call_at(started + wait, self.wake)
                    try:
                        await self._wake
                    finally:
                        handle.cancel()
                        self._wake = None
        except Exception:
            # Seen and counted, never silent; the next sync starts a new watcher.
            CRASHES["monitor.watch"] += 1
            log.exception(
                "task.crashed monitor.watch (%s/%s): restarted at the next sync",
                self.instance.service,
                self.instance.instance_id,
            )
        finally:
            self.prober.close()

    async def _apply(self, result: ProbeResult) -> None:
        monitor, instance = self.monitor, self.instance
        now = time.time()
        verdict = judge(instance, self.failures, self.successes, result, now)
        status = verdict.status
        if self.agent_only and (result.passed or status is not InstanceStatus.UNAVAILABLE):
            # The agent reports the instance's health; a reachable agent changes nothing here.
            status = instance.status
        self.suspect = not result.passed and status is not InstanceStatus.UNAVAILABLE
        maybe_ours = not result.passed and not result.definitive
        # Instances long unavailable do not count: a few dead hosts timing out for hours must
        # not keep self-preservation on and hold back the next genuine failures.
        monitor.preservation.observe(
            instance.key, failing=maybe_ours and instance.status is not InstanceStatus.UNAVAILABLE
        )
        if (
            status is InstanceStatus.UNAVAILABLE
            and instance.status is not InstanceStatus.UNAVAILABLE
            and maybe_ours
            and monitor.preservation.engaged
        ):
            status = instance.status  # hold: the failure may be ours (self-preservation)
        # Written at once: a status change, or a check that starts or stops failing (so the
        # API shows it); otherwise at least every write_every seconds, renewing the lease.
        changed = (
            status is not instance.status
            or (verdict.failures > 0) != (self.failures > 0)
            or (verdict.successes > 0) != (self.successes > 0)
        )
        self.failures, self.successes = verdict.failures, verdict.successes
        if not changed and time.monotonic() - self.last_write < monitor.settings.write_every:
            return
        output = f"agent: {result.output}" if self.agent_only else result.output
        record = CheckRecord(
            now, output, verdict.failures, verdict.successes, renews_lease=not self.agent_only
        )
        reason = output if status is not instance.status else ""
        # Checks move only the statuses they own; under an operator's status they still record
        # their results, on the condition that the operator's status is still the one we saw.
        guard = (
            CHECKED_STATUSES
            if instance.status in CHECKED_STATUSES
            else frozenset({instance.status})
        )
        written = await monitor.store.set_status(
            *instance.key, status, reason=reason, record=record, only_from=guard
        )
        self.last_write = time.monotonic()
        if written is None:  # an operator stepped in, or it was removed: read what is there
            latest = await monitor.store.get(*instance.key)
            if latest is not None:
                self.instance = latest
            return
        self.instance = written[0]
        if written[1] is not None:
            monitor.transitions += 1
            log.info(
                "registry.instance_status %s/%s: %s -> %s (%s)",
                *instance.key,
                instance.status.value,
                status.value,
                result.output,
            )
