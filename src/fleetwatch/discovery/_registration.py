"""Self-registration for Python services: register, heartbeat, re-register, deregister."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fleetwatch._supervisor import Supervisor
from fleetwatch.discovery._heartbeat import Heartbeater
from fleetwatch.discovery._registry_client import RegistryClient
from fleetwatch.errors import RegistryError

log = logging.getLogger("fleetwatch.discovery")


@dataclass
class Registered:
    """A live self-registration: its state for the service to read."""

    service: str
    instance_id: str
    heartbeats: int = 0
    registrations: int = 0
    gone: bool = False
    last_error: str = ""
    body: dict[str, Any] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def registration(
    service: str,
    instance_id: str,
    *,
    host: str,
    port: int,
    registry_url: str | None = None,
    token: str | None = None,
    ttl: float = 30.0,
    heartbeat_every: float | None = None,
    deregister_on_exit: bool = True,
    client: RegistryClient | None = None,
    **body: Any,
) -> AsyncIterator[Registered]:
    """``async with registration("llm-api", "pod-1", host=..., port=...):`` keeps the instance
    registered while the block runs.

    Heartbeats every ``ttl / 3`` (jittered). A 404 means the registry lost us (it restarted
    without persistence): register again. A 410 means an operator removed us: stop
    heartbeating and set ``gone``. Other errors are retried on the next beat. Leaving the
    block deregisters (unless told not to).
    """
    registry = client or RegistryClient(registry_url, token=token)
    state = Registered(service, instance_id, body={"host": host, "port": port, "ttl": ttl, **body})
    lease = Heartbeater(registry, service, instance_id, lambda: state.body)
    every = heartbeat_every or ttl / 3

    async def beat() -> None:
        while not lease.gone:
            await asyncio.sleep(every * random.uniform(0.8, 1.0))
            try:
                await lease.beat()
            except RegistryError as exc:
                state.last_error = str(exc)
            finally:
                state.heartbeats, state.registrations = lease.heartbeats, lease.registrations
                state.gone = lease.gone

    await lease.register()
    state.registrations = lease.registrations
    # Anything but a registry error is a bug: logged, counted, and the heartbeats go on.
    loops = Supervisor("registration", detail=f"{service}/{instance_id}")
    loops.start("heartbeat", beat)
    try:
        yield state
    finally:
        await loops.aclose()
        if deregister_on_exit and not state.gone:
            with contextlib.suppress(RegistryError):
                await registry.deregister(service, instance_id, tombstone=False)
        if client is None:
            await registry.aclose()
