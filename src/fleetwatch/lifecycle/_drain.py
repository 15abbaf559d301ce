"""The shutdown sequence that drops no request.

On SIGTERM (or SIGINT, or an authenticated drain request):

1. readiness fails at once, and the instance is marked ``draining`` in the registry;
2. the server **keeps accepting** for ``propagation_delay``, long enough for every client to
   have seen the change (uvicorn's own SIGTERM handling stops accepting at once: the race that
   drops requests during Kubernetes rollouts);
3. it waits until nothing is in flight, or ``drain_timeout`` passes, then cancels what is left
   and says how many;
4. it deregisters (leaving no tombstone: a successor may take the id at once), and returns.

A fixed ``sleep(10)`` would cut requests still running or wait for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from fleetwatch.discovery._registry_client import RegistryClient
from fleetwatch.errors import RegistryError
from fleetwatch.health._probes import HealthProbes
from fleetwatch.lifecycle._inflight import InFlight
from fleetwatch.registry._model import InstanceStatus

log = logging.getLogger("fleetwatch.lifecycle")
#: What the change feed needs to reach every client (bench/propagation.py: p99 ~13 ms), with a
#: wide margin for clients that poll, and for gateways between retries.
DEFAULT_PROPAGATION_DELAY_S = 2.0
DEFAULT_DRAIN_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Membership:
    """Where the instance is registered."""

    registry: RegistryClient
    service: str
    instance_id: str


@dataclass
class DrainReport:
    """What a drain did."""

    reason: str
    waited_s: float = 0.0
    served_during_drain: int = 0
    cancelled: int = 0
    deregistered: bool = False


async def drain(
    *,
    reason: str,
    inflight: InFlight,
    probes: HealthProbes | None = None,
    membership: Membership | None = None,
    propagation_delay: float = DEFAULT_PROPAGATION_DELAY_S,
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT_S,
) -> DrainReport:
    """Run the sequence above; the caller stops its server afterwards."""
    started = time.monotonic()
    served_before = inflight.served
    report = DrainReport(reason)
    log.info("lifecycle.drain_started %s: %d in flight", reason, inflight.in_flight)
    if probes is not None:
        probes.start_draining()
    if membership is not None:
        try:
            await membership.registry.set_status(
                membership.service, membership.instance_id, InstanceStatus.DRAINING
            )
        except RegistryError as exc:
            log.warning("lifecycle.drain_status_failed %s", exc)
    await asyncio.sleep(propagation_delay)  # still accepting: clients are catching up
    left = await inflight.wait_idle(drain_timeout)
    if left:
        report.cancelled = await inflight.cancel_all()
        log.warning(
            "lifecycle.drain_timeout: cancelled %d request(s) still in flight after %gs",
            report.cancelled,
            drain_timeout,
        )
    if membership is not None:
        with contextlib.suppress(RegistryError):
            report.deregistered = await membership.registry.deregister(
                membership.service, membership.instance_id, tombstone=False
            )
    report.waited_s = round(time.monotonic() - started, 3)
    report.served_during_drain = inflight.served - served_before
    log.info(
        "lifecycle.drain_done %s: %d served while draining, %d cancelled, %.2fs",
        reason,
        report.served_during_drain,
        report.cancelled,
        report.waited_s,
    )
    return report
