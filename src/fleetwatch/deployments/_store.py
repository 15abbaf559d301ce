"""Where deployments live: in the registry's store, beside hosts and orders, on their own feed.

Every write is a compare-and-set on the record's revision and change (so two writers never
lose each other's revision), and the controller's writes also carry its :class:`Fence`: a node
that lost the controller lease cannot record progress.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from fleetwatch._change_index import ChangeIndex
from fleetwatch.deployments._model import DEFAULT_HISTORY, Deployment, DeploymentSpec, Progress
from fleetwatch.errors import Conflict, InstanceNotFound
from fleetwatch.hosts._lease import Fence
from fleetwatch.hosts._memory import MemoryHostStore

#: Compare-and-set attempts before a write gives up (only racing writers retry), each after
#: a short random pause so that racers spread out.
CAS_ATTEMPTS = 20
CAS_PAUSE_S = 0.01


class DeploymentStore(Protocol):
    """Deployments by service, and the index of their feed."""

    async def deployment(self, service: str) -> Deployment | None: ...

    async def deployments(self) -> tuple[int, list[Deployment]]:
        """The feed's index and every deployment, sorted by service."""
        ...

    async def wait_for_change(self, index: int, within: float) -> int:
        """The feed's index once it exceeds ``index``, or after ``within`` seconds."""
        ...

    async def swap(
        self,
        service: str,
        change: Callable[[Deployment | None], Deployment],
        *,
        fence: Fence | None = None,
    ) -> Deployment:
        """Apply ``change`` to the stored record atomically (retried if another write raced),
        under ``fence`` if given; the stored result."""
        ...

    async def aclose(self) -> None: ...


async def put_spec(
    store: DeploymentStore, spec: DeploymentSpec, *, limit: int = DEFAULT_HISTORY
) -> Deployment:
    """A new revision of ``spec.service``'s deployment (the first is revision 1)."""

    def change(known: Deployment | None) -> Deployment:
        if known is None:
            return Deployment(spec, 1, progress=Progress(revision=1, replicas=spec.replicas))
        return known.revised(spec, limit)

    return await store.swap(spec.service, change)


async def set_paused(store: DeploymentStore, service: str, paused: bool) -> Deployment:
    """Pause (the controller starts and stops nothing for it) or resume a deployment."""

    def change(known: Deployment | None) -> Deployment:
        if known is None:
            raise InstanceNotFound(f"no deployment for {service!r}", service=service)
        return known.with_changes(paused=paused)

    return await store.swap(service, change)


async def put_progress(
    store: DeploymentStore, service: str, progress: Progress, fence: Fence
) -> Deployment:
    """The controller's progress record, fenced; dropped (Conflict) if the deployment has
    moved to another revision meanwhile."""

    def change(known: Deployment | None) -> Deployment:
        if known is None or known.revision != progress.revision:
            raise Conflict(f"{service!r} is no longer at revision {progress.revision}")
        return known.with_changes(progress=progress)

    return await store.swap(service, change, fence=fence)


class MemoryDeploymentStore:
    """Deployments in this process, fenced by the memory host store's leases."""

    def __init__(self, hosts: MemoryHostStore) -> None:
        self._hosts = hosts
        self._records: dict[str, Deployment] = {}
        self._index = ChangeIndex()

    async def deployment(self, service: str) -> Deployment | None:
        return self._records.get(service)

    async def deployments(self) -> tuple[int, list[Deployment]]:
        return self._index.value, [self._records[s] for s in sorted(self._records)]

    async def wait_for_change(self, index: int, within: float) -> int:
        return await self._index.wait_past(index, within)

    async def swap(
        self,
        service: str,
        change: Callable[[Deployment | None], Deployment],
        *,
        fence: Fence | None = None,
    ) -> Deployment:
        self._hosts.check_fence(fence)
        updated = change(self._records.get(service))
        stored = updated.with_changes(index=self._index.bump())
        self._records[service] = stored
        return stored

    async def aclose(self) -> None:
        return None


async def cas_loop(
    read: Callable[[], Awaitable[tuple[str | None, Deployment | None]]],
    write: Callable[[str | None, Deployment], Awaitable[Deployment | None]],
    change: Callable[[Deployment | None], Deployment],
    what: str,
) -> Deployment:
    """Read, change, write-if-unchanged; again when another writer got in between."""
    for _ in range(CAS_ATTEMPTS):
        raw, known = await read()
        stored = await write(raw, change(known))
        if stored is not None:
            return stored
        await asyncio.sleep(random.uniform(0, CAS_PAUSE_S))
    raise Conflict(f"{what}: {CAS_ATTEMPTS} writers raced; try again")


def dumps(deployment: Deployment) -> str:
    data: dict[str, Any] = deployment.to_dict()
    return json.dumps(data, sort_keys=True)
