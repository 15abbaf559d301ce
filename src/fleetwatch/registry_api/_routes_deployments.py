"""Deployments: a ``deploy`` token writes a service's desired state (each write a revision),
pauses, resumes and undoes it; the leading node's controller carries it out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from fleetwatch.deployments._controller import LEASE_NAME
from fleetwatch.deployments._model import CanaryStep, Deployment, DeploymentSpec
from fleetwatch.deployments._store import DeploymentStore, put_spec, set_paused
from fleetwatch.errors import Conflict, InstanceNotFound
from fleetwatch.registry._model import NAME_PATTERN
from fleetwatch.registry_api._blocking import parse_wait, unless_disconnected
from fleetwatch.registry_api._deps import Caller, Reader
from fleetwatch.registry_api._errors import ERROR_RESPONSES
from fleetwatch.registry_api._routes_hosts import Hosts
from fleetwatch.security._auth import Scope

router = APIRouter(tags=["deployments"], responses=ERROR_RESPONSES)
Name = Annotated[str, Path(pattern=NAME_PATTERN)]
ShortText = Annotated[str, Field(max_length=256)]
#: Parameter and label names: any short text (no pattern on an object's keys, see
#: _host_schemas.Key).
ParamName = Annotated[str, Field(min_length=1, max_length=64)]
LabelName = ParamName
Amount = Annotated[str, Field(pattern=r"^\d{1,6}%?$")]
PATH = "/v1/deployments/{service}"


async def deployment_store(request: Request) -> DeploymentStore:
    found: DeploymentStore = request.app.state.deployments
    return found


Deployments = Annotated[DeploymentStore, Depends(deployment_store)]


class CanaryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The gateway whose per-version figures judge the canary (the controller GETs its
    #: ``/v1/gateway/stats``, and nothing else, with a 5 s timeout).
    gateway_url: Annotated[str, Field(pattern=r"^https?://[^\s]{1,2000}$")]
    soak_s: Annotated[float, Field(ge=0, le=86_400)] = 30.0
    max_error_increase: Annotated[float, Field(ge=0, le=1)] = 0.01
    max_latency_ratio: Annotated[float, Field(ge=1)] = 1.5


class DeploymentBody(BaseModel):
    """A service's desired state: each PUT is a new revision."""

    model_config = ConfigDict(extra="forbid")

    profile: Annotated[str, Field(pattern=NAME_PATTERN)]
    version: Annotated[str, Field(max_length=64)]
    replicas: Annotated[int, Field(ge=0, le=100_000)]
    params: Annotated[dict[ParamName, ShortText], Field(max_length=64)] = Field(
        default_factory=dict
    )
    placement: Annotated[dict[LabelName, ShortText], Field(max_length=32)] = Field(
        default_factory=dict
    )
    spread: bool = True
    max_surge: Amount = "25%"
    max_unavailable: Amount = "0"
    ready_deadline_s: Annotated[float, Field(gt=0, le=86_400)] = 600.0
    progress_deadline_s: Annotated[float, Field(gt=0, le=86_400)] = 900.0
    canary: CanaryBody | None = None

    def spec(self, service: str) -> DeploymentSpec:
        """As a :class:`DeploymentSpec`; a body that contradicts itself (surge and
        unavailability both 0) is a Conflict (409), which the schema cannot say."""
        data = self.model_dump()
        canary = data.pop("canary")
        try:
            return DeploymentSpec(
                service=service, canary=CanaryStep(**canary) if canary else None, **data
            )
        except ValueError as exc:
            raise Conflict(str(exc), service=service) from None


class PauseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paused: bool = True


class UndoBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The revision to go back to (default: the one before the current).
    to_revision: Annotated[int, Field(ge=1)] | None = None


def _out(deployment: Deployment) -> dict[str, Any]:
    return deployment.to_dict()


@router.put(PATH)
async def put_deployment(
    *, service: Name, body: DeploymentBody, who: Caller, deployments: Deployments
) -> dict[str, Any]:
    """Write a new revision of the service's deployment; the controller rolls it out."""
    who.require(Scope.DEPLOY, f"deploying {service!r}")
    return _out(await put_spec(deployments, body.spec(service)))


@router.get("/v1/deployments")
async def list_deployments(
    *,
    request: Request,
    who: Reader,
    deployments: Deployments,
    hosts: Hosts,
    index: Annotated[int | None, Query(ge=0)] = None,
    wait: str | None = None,
) -> dict[str, Any]:
    """Every deployment and its progress, and which node's controller leads; with
    ``index``, a blocking query on their feed."""
    if index is not None:
        await unless_disconnected(request, deployments.wait_for_change(index, parse_wait(wait)))
    current, found = await deployments.deployments()
    lease = await hosts.lease(LEASE_NAME)
    leader = (
        {"holder": lease.holder, "epoch": lease.epoch, "expires_at": lease.expires_at}
        if lease is not None and lease.expires_at > await hosts.now()
        else None
    )
    return {"index": current, "deployments": [_out(d) for d in found], "controller": leader}


@router.get(PATH)
async def get_deployment(*, service: Name, who: Reader, deployments: Deployments) -> dict[str, Any]:
    """One deployment: its spec, revision, history and progress."""
    found = await deployments.deployment(service)
    if found is None:
        raise InstanceNotFound(f"no deployment for {service!r}", service=service)
    return _out(found)


@router.put(PATH + "/pause")
async def pause(
    *, service: Name, body: PauseBody, who: Caller, deployments: Deployments
) -> dict[str, Any]:
    """Pause (the controller starts and stops nothing) or resume."""
    who.require(Scope.DEPLOY, f"pausing {service!r}")
    return _out(await set_paused(deployments, service, body.paused))


@router.post(PATH + "/undo")
async def undo(
    *, service: Name, body: UndoBody, who: Caller, deployments: Deployments
) -> dict[str, Any]:
    """Roll back: a new revision with the spec of ``to_revision`` (default: the previous)."""
    who.require(Scope.DEPLOY, f"undoing {service!r}")
    found = await deployments.deployment(service)
    if found is None:
        raise InstanceNotFound(f"no deployment for {service!r}", service=service)
    if body.to_revision is None and not found.history:
        raise InstanceNotFound(f"{service!r} has no earlier revision", service=service)
    target = body.to_revision or found.history[0][0]
    try:
        spec = found.spec_at(target)
    except KeyError as exc:
        raise InstanceNotFound(str(exc.args[0]), service=service) from None
    return _out(await put_spec(deployments, spec))
