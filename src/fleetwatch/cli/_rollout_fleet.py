"""``fleetwatch rollout SERVICE ...`` across the hosts, carried out by the controller of
``fleetwatch serve``: write a revision and follow it; ``status``, ``pause``, ``resume``,
``undo``. Every command here takes ``--registry`` and ``--token`` itself (the group has no
options of its own, so ``rollout SERVICE`` and ``rollout status`` parse alike)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fleetwatch.cli._options import RegistryToken, RegistryUrl
from fleetwatch.deployments._client import DeploymentsClient
from fleetwatch.deployments._model import Deployment, DeploymentSpec, Phase
from fleetwatch.errors import ConfigError, FleetwatchError, InstanceNotFound

Service = Annotated[str, typer.Argument(help="The service.")]
#: The phases a rollout ends in (the command's exit: 0 complete, 1 otherwise).
ENDED = frozenset({Phase.COMPLETE, Phase.FAILED, Phase.PAUSED})


def _pairs(values: list[str], what: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in values:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} takes NAME=VALUE, got {pair!r}")
        found[key] = value
    return found


def _client(registry: str | None, token: str | None) -> DeploymentsClient:
    return DeploymentsClient(registry, token=token)


def _line(deployment: Deployment) -> str:
    p = deployment.progress
    state = "paused" if deployment.paused else p.phase.value
    detail = f": {p.message}" if p.message and p.message != state else ""
    return (
        f"{deployment.service} revision {deployment.revision} (version "
        f"{deployment.spec.version}): {state}, {p.updated}/{deployment.spec.replicas} updated, "
        f"{p.available} available{detail}"
    )


async def _follow(api: DeploymentsClient, service: str, revision: int, within: float) -> int:
    """Print the rollout's progress as it changes until it ends; the exit code."""
    console, said, index = Console(), "", None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        index, found, _ = await api.deployments(index=index, wait=10)
        mine = next((d for d in found if d.service == service), None)
        if mine is None or mine.progress.revision != revision:
            continue
        line = _line(mine)
        if line != said:
            console.log(line, highlight=False)
            said = line
        if mine.paused or mine.progress.phase in ENDED:
            return 0 if mine.progress.phase is Phase.COMPLETE else 1
    raise FleetwatchError(f"the rollout of {service} did not end within {within:g}s")


async def fleet_apply(
    registry: str | None,
    token: str | None,
    service: str,
    version: str,
    changes: dict[str, Any],
    *,
    follow: bool,
) -> int:
    """Write SERVICE's next revision: the current spec with ``changes`` (with a profile in
    them, a new spec; the first revision needs one), then follow it; the exit code."""
    async with _client(registry, token) as api:
        try:
            current: DeploymentSpec | None = (await api.deployment(service)).spec
        except InstanceNotFound:
            current = None
        if current is None and "profile" not in changes:
            raise ConfigError(
                f"{service} has no deployment yet: its first revision needs --profile "
                "(a launch profile of the hosts' configuration)"
            )
        try:
            if current is None or "profile" in changes:
                # A profile starts the spec afresh: another profile's parameters, deadlines
                # and canary do not carry over to it (the replica count does).
                fresh = {"replicas": current.replicas if current else 1, **changes}
                spec = DeploymentSpec(service=service, version=version, **fresh)
            else:
                spec = dataclasses.replace(current, version=version, **changes)
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
        written = await api.apply(spec)
        Console().print(
            f"{service}: revision {written.revision} (version {version}) written", highlight=False
        )
        if not follow:
            return 0
        return await _follow(api, service, written.revision, spec.progress_deadline_s + 60)


def status(
    service: Annotated[str | None, typer.Argument(help="One service (default: all).")] = None,
    watch: Annotated[bool, typer.Option(help="Print again at every change.")] = False,
    registry: RegistryUrl = None,
    token: RegistryToken = None,
) -> None:
    """Every deployment (or one): revision, phase, progress, and which node leads."""

    async def show() -> None:
        index = None
        async with _client(registry, token) as api:
            while True:
                index, found, leader = await api.deployments(index=index, wait=30)
                table = Table("service", "revision", "version", "replicas", "phase", "progress")
                for d in found:
                    if service is None or d.service == service:
                        p = d.progress
                        table.add_row(
                            d.service, str(d.revision), d.spec.version, str(d.spec.replicas),
                            "paused" if d.paused else p.phase.value, p.message,
                        )  # fmt: skip
                console = Console()
                console.print(table)
                holder = f"{leader['holder']} (epoch {leader['epoch']})" if leader else "none"
                console.print(f"controller: {holder}", highlight=False)
                if not watch:
                    return

    asyncio.run(show())


def pause(service: Service, registry: RegistryUrl = None, token: RegistryToken = None) -> None:
    """Pause SERVICE's rollout: the controller starts and stops nothing for it."""
    asyncio.run(_pause(registry, token, service, True))


def resume(service: Service, registry: RegistryUrl = None, token: RegistryToken = None) -> None:
    """Resume SERVICE's rollout."""
    asyncio.run(_pause(registry, token, service, False))


async def _pause(registry: str | None, token: str | None, service: str, paused: bool) -> None:
    async with _client(registry, token) as api:
        Console().print(_line(await api.pause(service, paused)), highlight=False)


def undo(
    service: Service,
    to_revision: Annotated[int | None, typer.Option(help="Default: the previous.", min=1)] = None,
    follow: Annotated[bool, typer.Option(help="Follow the rollout until it ends.")] = True,
    registry: RegistryUrl = None,
    token: RegistryToken = None,
) -> None:
    """Roll SERVICE back: a new revision with an earlier revision's spec."""

    async def run() -> int:
        async with _client(registry, token) as api:
            written = await api.undo(service, to_revision)
            Console().print(
                f"{service}: revision {written.revision} (version {written.spec.version}) written",
                highlight=False,
            )
            if not follow:
                return 0
            deadline = written.spec.progress_deadline_s + 60
            return await _follow(api, service, written.revision, deadline)

    raise typer.Exit(asyncio.run(run()))
