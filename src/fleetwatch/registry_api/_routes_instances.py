"""Writes: register, heartbeat, status, drain, deregister."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from fleetwatch.registry._model import InstanceStatus
from fleetwatch.registry_api import _schemas as schemas
from fleetwatch.registry_api._deps import NAME_PATTERN, Caller, RegistryDep
from fleetwatch.registry_api._errors import ERROR_RESPONSES

router = APIRouter(tags=["instances"], responses=ERROR_RESPONSES)
Name = Annotated[str, Path(pattern=NAME_PATTERN)]
PATH = "/v1/services/{service}/instances/{instance_id}"


@router.put(PATH, response_model=schemas.InstanceReply)
async def register(
    *,
    service: Name,
    instance_id: Name,
    body: schemas.RegistrationBody,
    who: Caller,
    registry: RegistryDep,
) -> schemas.InstanceReply:
    """Register or update an instance. The smallest body is ``{"host": ..., "port": ...}``."""
    event = await registry.register(service, instance_id, body.registration(), who)
    assert event.instance is not None
    return schemas.InstanceReply(index=event.index, instance=schemas.InstanceOut.of(event.instance))


@router.put(PATH + "/heartbeat", response_model=schemas.InstanceReply)
async def heartbeat(
    *,
    service: Name,
    instance_id: Name,
    who: Caller,
    registry: RegistryDep,
    body: schemas.HeartbeatBody | None = None,
) -> schemas.InstanceReply:
    """Renew the lease. 404: register again (the registry may have restarted); 410: an operator
    removed this instance, stop."""
    report = InstanceStatus(body.status) if body and body.status else None
    instance = await registry.heartbeat(
        service, instance_id, who, report=report, output=body.output if body else ""
    )
    index = await registry.store.index()
    return schemas.InstanceReply(index=index, instance=schemas.InstanceOut.of(instance))


@router.put(PATH + "/load", response_model=schemas.EmptyReply)
async def put_load(
    *,
    service: Name,
    instance_id: Name,
    body: schemas.LoadBody,
    who: Caller,
    registry: RegistryDep,
) -> schemas.EmptyReply:
    """Publish load figures. They travel apart from membership: no index bump, no wake-up."""
    await registry.put_load(service, instance_id, body.load, who)
    return schemas.EmptyReply(index=await registry.store.index())


@router.put(PATH + "/status", response_model=schemas.EmptyReply)
async def set_status(
    *,
    service: Name,
    instance_id: Name,
    body: schemas.StatusBody,
    who: Caller,
    registry: RegistryDep,
) -> schemas.EmptyReply:
    """``draining`` (no new traffic), ``maintenance`` (out, never evicted), or ``active``."""
    status = None if body.status == "active" else InstanceStatus(body.status)
    await registry.set_operator_status(service, instance_id, status, who)
    return schemas.EmptyReply(index=await registry.store.index())


@router.post("/v1/admin/drain/{service}/{instance_id}", response_model=schemas.EmptyReply)
async def drain(
    *, service: Name, instance_id: Name, who: Caller, registry: RegistryDep
) -> schemas.EmptyReply:
    """``/admin/drain``, an operator's drain: mark an instance draining."""
    await registry.set_operator_status(service, instance_id, InstanceStatus.DRAINING, who)
    return schemas.EmptyReply(index=await registry.store.index())


@router.delete(PATH, response_model=schemas.EmptyReply)
async def deregister(
    *,
    service: Name,
    instance_id: Name,
    who: Caller,
    registry: RegistryDep,
    tombstone: Annotated[
        bool,
        Query(description="false: the instance leaves on its own and may come back at once"),
    ] = True,
) -> schemas.EmptyReply:
    """Deregister, leaving a tombstone (heartbeats and re-registration get 410 for a while).

    An instance deregistering itself on shutdown passes ``tombstone=false``; an operator's
    deregistration of someone else's instance always leaves one.
    """
    event = await registry.deregister(service, instance_id, who, tombstone=tombstone)
    return schemas.EmptyReply(index=await registry.store.index(), removed=event is not None)
