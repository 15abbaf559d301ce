"""``fleetwatch deploy``: a service's deployment across the hosts, carried out by the
controller of `fleetwatch serve`: apply a revision and follow it, status, pause, resume, undo."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fleetwatch.cli._options import RegistryToken, RegistryUrl
from fleetwatch.config._durations import parse_duration
from fleetwatch.deployments._client import DeploymentsClient
from fleetwatch.deployments._model import Deployment, DeploymentSpec, Phase
from fleetwatch.errors import ConfigError, FleetwatchError

deploy_app = typer.Typer(
    help="Deployments across the hosts: apply, status, pause, resume, undo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
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


@deploy_app.callback()
def options(ctx: typer.Context, registry: RegistryUrl = None, token: RegistryToken = None) -> None:
    """Deployments across the hosts (the registry's controller carries them out)."""
    ctx.obj = (registry, token)


def _client(ctx: typer.Context) -> DeploymentsClient:
    registry, token = ctx.obj
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


@deploy_app.command("apply")
def apply(
    ctx: typer.Context,
    service: Service,
    profile: Annotated[str, typer.Option(help="Launch profile (in each host's config).")] = ...,  # type: ignore[assignment]
    version: Annotated[str, typer.Option(help="Version of the new instances.")] = ...,  # type: ignore[assignment]
    replicas: Annotated[int, typer.Option(help="How many instances.", min=0)] = 1,
    param: Annotated[list[str] | None, typer.Option(help="Profile NAME=VALUE.")] = None,
    place: Annotated[list[str] | None, typer.Option(help="Host label NAME=VALUE.")] = None,
    spread: Annotated[bool, typer.Option(help="Spread over hosts.")] = True,
    max_surge: Annotated[str, typer.Option(help="Count or percentage.")] = "25%",
    max_unavailable: Annotated[str, typer.Option(help="Count or percentage.")] = "0",
    progress_deadline: Annotated[str, typer.Option(help="Fail after no progress this long.")] = (
        "15m"
    ),
    follow: Annotated[bool, typer.Option(help="Follow the rollout until it ends.")] = True,
) -> None:
    """Write a new revision of SERVICE's deployment and follow its rollout."""
    try:
        spec = DeploymentSpec(
            service=service,
            profile=profile,
            version=version,
            replicas=replicas,
            params=_pairs(param or [], "--param"),
            placement=_pairs(place or [], "--place"),
            spread=spread,
            max_surge=max_surge,
            max_unavailable=max_unavailable,
            progress_deadline_s=parse_duration(progress_deadline),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None

    async def run() -> int:
        async with _client(ctx) as api:
            written = await api.apply(spec)
            Console().print(f"{service}: revision {written.revision} written", highlight=False)
            if not follow:
                return 0
            return await _follow(api, service, written.revision, spec.progress_deadline_s + 60)

    raise typer.Exit(asyncio.run(run()))


@deploy_app.command("status")
def status(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Argument(help="One service (default: all).")] = None,
    watch: Annotated[bool, typer.Option(help="Print again at every change.")] = False,
) -> None:
    """Every deployment (or one): revision, phase, progress, and which node leads."""

    async def show() -> None:
        index = None
        async with _client(ctx) as api:
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


@deploy_app.command("pause")
def pause(ctx: typer.Context, service: Service) -> None:
    """Pause SERVICE's rollout: the controller starts and stops nothing for it."""
    asyncio.run(_pause(ctx, service, True))


@deploy_app.command("resume")
def resume(ctx: typer.Context, service: Service) -> None:
    """Resume SERVICE's rollout."""
    asyncio.run(_pause(ctx, service, False))


async def _pause(ctx: typer.Context, service: str, paused: bool) -> None:
    async with _client(ctx) as api:
        Console().print(_line(await api.pause(service, paused)), highlight=False)


@deploy_app.command("undo")
def undo(
    ctx: typer.Context,
    service: Service,
    to_revision: Annotated[int | None, typer.Option(help="Default: the previous.", min=1)] = None,
    follow: Annotated[bool, typer.Option(help="Follow the rollout until it ends.")] = True,
) -> None:
    """Roll SERVICE back: a new revision with an earlier revision's spec."""

    async def run() -> int:
        async with _client(ctx) as api:
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
