"""``fleetwatch rollout``: a new version of a service, rolled by the deployment controller.

- ``fleetwatch rollout SERVICE --version V [--param k=v ...]``: across the hosts. It writes
  the service's next revision (the current one with what the options change) and follows it.
- ``fleetwatch rollout --service S --launch CMD --version V``: on this machine, as its one
  host, with the same controller (see :mod:`fleetwatch.rollout`).
- ``fleetwatch rollout status [SERVICE] [--watch]``, ``pause``, ``resume``, ``undo``.

The first word picks a subcommand when it names one; anything else is a rollout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer import _click as click
from typer.core import TyperCommand, TyperGroup

from fleetwatch.cli._logsetup import setup_logs
from fleetwatch.cli._options import RegistryToken, RegistryUrl
from fleetwatch.cli._rollout_fleet import _pairs, fleet_apply, pause, resume, status, undo
from fleetwatch.config._durations import parse_duration
from fleetwatch.deployments._model import CanaryStep
from fleetwatch.errors import ConfigError
from fleetwatch.llm._adapters import KINDS
from fleetwatch.rollout import Rollout, RolloutSettings

#: The hidden command a first word that is no subcommand goes to.
ROLL = "roll"
#: How long a new instance on this machine may take to be available, by default.
LOCAL_READY = "120s"


class RolloutCommands(TyperGroup):
    """``rollout SUBCOMMAND ...`` when the first word is one, ``rollout ...`` (a rollout)
    otherwise."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = args[0] if args else None
        if first is not None and first not in self.commands and first not in ("--help", "-h"):
            args = [ROLL, *args]
        return super().parse_args(ctx, args)


class RollCommand(TyperCommand):
    """The rollout itself, whose usage line reads as it is typed (not as its hidden name)."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return ["SERVICE", "--version", "V", "[OPTIONS]"]

    def get_usage(self, ctx: click.Context) -> str:
        parent = ctx.parent.command_path if ctx.parent else "fleetwatch rollout"
        return f"Usage: {parent} {' '.join(self.collect_usage_pieces(ctx))}"


rollout_app = typer.Typer(
    cls=RolloutCommands,
    help=(
        "Roll a service to a new version: across the hosts (`rollout SERVICE --version V`) or "
        "on this machine (`rollout --service S --launch CMD --version V`); then status, "
        "pause, resume, undo. `fleetwatch rollout SERVICE --help` lists a rollout's options."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
rollout_app.command("status")(status)
rollout_app.command("pause")(pause)
rollout_app.command("resume")(resume)
rollout_app.command("undo")(undo)


def _count(value: str, option: str) -> int:
    if not value.isdigit():
        raise ConfigError(f"{option} on this machine is a count of instances, got {value!r}")
    return int(value)


@rollout_app.command(ROLL, hidden=True, cls=RollCommand)
def roll(
    service_arg: Annotated[
        str | None, typer.Argument(metavar="SERVICE", help="The service to roll.")
    ] = None,
    service: Annotated[str | None, typer.Option(help="The service (as SERVICE).")] = None,
    version: Annotated[str | None, typer.Option(help="Version of the new instances.")] = None,
    param: Annotated[list[str] | None, typer.Option(help="Profile NAME=VALUE.")] = None,
    profile: Annotated[str | None, typer.Option(help="Launch profile (hosts' config).")] = None,
    replicas: Annotated[int | None, typer.Option(help="How many instances.", min=0)] = None,
    place: Annotated[list[str] | None, typer.Option(help="Host label NAME=VALUE.")] = None,
    max_surge: Annotated[str | None, typer.Option(help="New instances ahead (count or %).")] = (
        None
    ),
    max_unavailable: Annotated[
        str | None, typer.Option(help="Old instances out ahead (count or %).")
    ] = None,
    progress_deadline: Annotated[
        str | None, typer.Option(help="Fail after no progress this long.")
    ] = None,
    ready_timeout: Annotated[
        str | None, typer.Option(help="Longest wait for 'available' (default 120s here).")
    ] = None,
    launch: Annotated[
        str | None, typer.Option(help="On this machine: the command, with {port} in it.")
    ] = None,
    kind: Annotated[str, typer.Option(help=f"Server family: {', '.join(KINDS)}.")] = "openai",
    model: Annotated[str | None, typer.Option(help="Model the new servers must serve.")] = None,
    canary: Annotated[
        bool, typer.Option(help="Soak one new instance first and judge it (needs --gateway).")
    ] = False,
    canary_soak: Annotated[str, typer.Option(help="How long the canary takes traffic.")] = "30s",
    gateway: Annotated[
        str | None, typer.Option(help="The gateway whose figures judge the canary.")
    ] = None,
    log_dir: Annotated[
        Path, typer.Option(help="On this machine: agents' logs and this host's state.")
    ] = Path("fleetwatch-rollout-logs"),
    undo_: Annotated[
        bool, typer.Option("--undo", help="On this machine: back to an earlier revision.")
    ] = False,
    to_revision: Annotated[int | None, typer.Option(help="With --undo.", min=1)] = None,
    follow: Annotated[bool, typer.Option(help="Follow the rollout until it ends.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    registry: RegistryUrl = None,
    token: RegistryToken = None,
) -> None:
    """Roll SERVICE to --version across the hosts: write its next revision (the current one
    with what the options change; --profile starts afresh) and follow it to the end. With
    --launch (or --undo), on this machine as its one host, through the same controller."""
    name = service_arg or service
    if not name:
        raise ConfigError("name the service: fleetwatch rollout SERVICE --version V")
    if launch or undo_:
        _local(
            as_json,
            service=name, launch=launch, version=version, registry_url=registry, token=token,
            kind=kind, model=model, replicas=replicas,
            max_surge=_count(max_surge or "1", "--max-surge"),
            max_unavailable=_count(max_unavailable or "0", "--max-unavailable"),
            ready_timeout=parse_duration(ready_timeout or LOCAL_READY), canary=canary,
            canary_soak=parse_duration(canary_soak), gateway_url=gateway,
            log_dir=log_dir.resolve(), undo=undo_, to_revision=to_revision,
        )  # fmt: skip
        return
    if not version:
        raise ConfigError("--version is required: the version the new instances run")
    changes: dict[str, Any] = {
        "params": _pairs(param or [], "--param") if param else None,
        "placement": _pairs(place or [], "--place") if place else None,
        "profile": profile,
        "replicas": replicas,
        "max_surge": max_surge,
        "max_unavailable": max_unavailable,
        "progress_deadline_s": parse_duration(progress_deadline) if progress_deadline else None,
        "ready_deadline_s": parse_duration(ready_timeout) if ready_timeout else None,
    }
    if canary:
        if not gateway:
            raise ConfigError("--canary compares the gateway's figures: give --gateway URL")
        changes["canary"] = CanaryStep(gateway_url=gateway, soak_s=parse_duration(canary_soak))
    given = {k: v for k, v in changes.items() if v is not None}
    raise typer.Exit(asyncio.run(fleet_apply(registry, token, name, version, given, follow=follow)))


def _local(as_json: bool, **values: Any) -> None:
    """A rollout on this machine, reported as it goes (and as JSON with ``--json``)."""
    setup_logs("info")
    console = Console(stderr=as_json)
    try:
        settings = RolloutSettings(**values)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    report = asyncio.run(
        Rollout(settings, say=lambda line: console.log(line, highlight=False)).run()
    )
    if as_json:
        print(json.dumps(dataclasses.asdict(report), indent=2))
    else:
        for iid, v in sorted(report.versions.items()):
            console.print(f"  {iid}: version {v}")
    raise typer.Exit(0 if report.ok else 1)
