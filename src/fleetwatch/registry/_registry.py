"""The registry's rules on top of a store: who may change what, and what a change means."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from fleetwatch.errors import Conflict, Forbidden, InstanceNotFound
from fleetwatch.registry._model import (
    CHECKED_STATUSES,
    OPERATOR_STATUSES,
    CheckType,
    Event,
    Instance,
    InstanceStatus,
    Registration,
)
from fleetwatch.registry._store import RegistryStore
from fleetwatch.security._auth import Principal, Scope
from fleetwatch.security._networks import NetworkPolicy

#: How long an operator's deregistration keeps an instance out (its agent's heartbeats and
#: re-registrations get 410 Gone meanwhile).
DEFAULT_TOMBSTONE_S = 300.0


class Registry:
    """Registration, heartbeats, operator status, deregistration and discovery."""

    def __init__(
        self,
        store: RegistryStore,
        *,
        tombstone_s: float = DEFAULT_TOMBSTONE_S,
        policy: NetworkPolicy | None = None,
    ) -> None:
        self.store = store
        self.tombstone_s = tombstone_s
        self.policy = policy or NetworkPolicy()

    async def _owned(
        self, service: str, instance_id: str, caller: Principal, what: str
    ) -> Instance:
        instance = await self.store.get(service, instance_id)
        if instance is None:
            raise InstanceNotFound(
                f"{service}/{instance_id} is not registered",
                service=service,
                instance_id=instance_id,
            )
        if instance.owner != caller.name and not caller.admin:
            raise Forbidden(
                f"{what} {service}/{instance_id}: it was registered by another token "
                f"({instance.owner!r}); only that token or an admin token may change it",
                service=service,
                instance_id=instance_id,
            )
        return instance

    async def register(
        self, service: str, instance_id: str, registration: Registration, caller: Principal
    ) -> Event:
        """Register or update an instance; only its registrant or an admin may update it."""
        caller.require(Scope.REGISTER, "registering an instance")
        await self.policy.resolve(registration.host, registration.port)  # the SSRF guard
        existing = await self.store.get(service, instance_id)
        if existing is not None and existing.owner != caller.name and not caller.admin:
            raise Forbidden(
                f"{service}/{instance_id} is registered by another token ({existing.owner!r}); "
                "only that token or an admin token may change it",
                service=service,
                instance_id=instance_id,
            )
        now = await self.store.now()
        carried: dict[str, object] = {"status": InstanceStatus.STARTING, "registered_at": now}
        if existing is not None:
            same_target = (existing.host, existing.port, existing.scheme) == (
                registration.host,
                registration.port,
                registration.scheme,
            )
            if same_target:  # a re-registration is not a restart: keep what checks learnt
                carried = {
                    "status": existing.status,
                    "registered_at": existing.registered_at,
                    "status_since": existing.status_since,
                    "last_check_at": existing.last_check_at,
                    "last_check_output": existing.last_check_output,
                    "consecutive_failures": existing.consecutive_failures,
                    "consecutive_successes": existing.consecutive_successes,
                }
            # else: a new target starts afresh, startup grace included
        instance = Instance(
            service=service,
            instance_id=instance_id,
            host=registration.host,
            port=registration.port,
            scheme=registration.scheme,
            check=registration.check,
            tags=registration.tags,
            metadata=registration.metadata,
            version=registration.version,
            weight=registration.weight,
            ttl=registration.ttl,
            owner=existing.owner if existing is not None else caller.name,
        ).with_changes(**carried)
        # The store refuses, atomically, if someone else registered this id meanwhile.
        return await self.store.upsert(instance, guard_owner=not caller.admin)

    async def heartbeat(
        self,
        service: str,
        instance_id: str,
        caller: Principal,
        *,
        report: InstanceStatus | None = None,
        output: str = "",
    ) -> Instance:
        """Renew the lease; an agent holding a TTL check also reports its verdict here."""
        caller.require(Scope.REGISTER, "a heartbeat")
        current = await self.store.get(service, instance_id)
        if current is not None and current.owner != caller.name and not caller.admin:
            # Checked before renewing: a refused heartbeat must not keep the lease alive.
            raise Forbidden(
                f"{service}/{instance_id} belongs to another token ({current.owner!r})",
                service=service,
                instance_id=instance_id,
            )
        instance = await self.store.renew(service, instance_id)  # raises InstanceGone
        if instance is None:
            raise InstanceNotFound(
                f"{service}/{instance_id} is not registered (the registry may have restarted): "
                "register again",
                service=service,
                instance_id=instance_id,
            )
        if report is not None and instance.check.type is not CheckType.TTL:
            raise Conflict(
                f"{service}/{instance_id} is checked by the registry's monitor "
                f"({instance.check.type.value}); only agent-held (ttl) instances report a status",
                service=service,
                instance_id=instance_id,
            )
        if (
            report is not None
            and report is not instance.status
            and not instance.status.held_by_operator
        ):
            result = await self.store.set_status(
                service,
                instance_id,
                report,
                reason=output or "reported by agent",
                only_from=CHECKED_STATUSES,
            )
            if result is not None:
                instance = result[0]
        return instance

    async def put_load(
        self, service: str, instance_id: str, load: Mapping[str, float], caller: Principal
    ) -> None:
        """Record load figures for an instance (its registrant or an admin)."""
        caller.require(Scope.REGISTER, "publishing load")
        await self._owned(service, instance_id, caller, "publishing load for")
        await self.store.put_load(service, instance_id, load)

    async def set_operator_status(
        self, service: str, instance_id: str, status: InstanceStatus | None, caller: Principal
    ) -> Event | None:
        """``draining`` or ``maintenance``; ``None`` hands the instance back to its checks."""
        caller.require(Scope.REGISTER, "changing an instance's status")
        await self._owned(service, instance_id, caller, "changing the status of")
        if status is None:
            result = await self.store.set_status(
                service,
                instance_id,
                InstanceStatus.STARTING,
                reason="operator: back to checks",
                only_from=OPERATOR_STATUSES,
            )
        else:
            if status not in OPERATOR_STATUSES:
                raise ValueError(f"an operator sets draining or maintenance, not {status.value}")
            result = await self.store.set_status(
                service, instance_id, status, reason=f"operator: {status.value}"
            )
        return result[1] if result else None

    async def deregister(
        self, service: str, instance_id: str, caller: Principal, *, tombstone: bool = True
    ) -> Event | None:
        """Remove an instance, leaving a tombstone so its agent cannot bring it straight back.

        An instance leaving on its own (a graceful shutdown, a restart to come) says
        ``tombstone=False``; done by anyone else (an operator) there is always a tombstone.
        """
        caller.require(Scope.REGISTER, "deregistering an instance")
        instance = await self._owned(service, instance_id, caller, "deregistering")
        by_operator = instance.owner != caller.name
        return await self.store.remove(
            service,
            instance_id,
            reason=f"deregistered by {caller.name}",
            tombstone_for=self.tombstone_s if tombstone or by_operator else 0.0,
        )

    async def discover(
        self,
        service: str,
        *,
        status: Iterable[InstanceStatus] = (),
        tags: Iterable[str] = (),
        passing: bool = False,
        instance_ids: Iterable[str] = (),
    ) -> list[Instance]:
        """Instances of a service, filtered: any of ``status``, all of ``tags``, or routable;
        ``instance_ids``: those only, each read by itself (an agent watching its own record,
        or a host its own instances, must not cost a read of the whole service)."""
        statuses = frozenset(status)
        wanted = frozenset(tags)
        ids = list(dict.fromkeys(instance_ids))
        if not ids:
            found = await self.store.instances(service)
        else:
            read = [await self.store.get(service, iid) for iid in ids]
            found = [i for i in read if i is not None]
        return [
            i
            for i in found
            if (not statuses or i.status in statuses)
            and wanted <= i.tags
            and (not passing or i.status.routable)
        ]

    async def services(self) -> dict[str, dict[str, int]]:
        """Every service with its instance count by status (and ``total``)."""
        counts: dict[str, Counter[str]] = {}
        for instance in await self.store.instances():
            counter = counts.setdefault(instance.service, Counter())
            counter[instance.status.value] += 1
            counter["total"] += 1
        return {service: dict(sorted(c.items())) for service, c in sorted(counts.items())}
