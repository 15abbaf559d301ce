"""``fleetwatch rollout``: replace every instance of a service with a new version."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fleetwatch.cli._logsetup import setup_logs
from fleetwatch.cli._options import RegistryToken, RegistryUrl
from fleetwatch.config._durations import parse_duration
from fleetwatch.discovery._registry_client import RegistryClient
from fleetwatch.errors import ConfigError
from fleetwatch.llm._adapters import KINDS
from fleetwatch.rollout import Rollout, RolloutSettings
from fleetwatch.rollout._plan import META_PREVIOUS_TEMPLATE, META_PREVIOUS_VERSION


async def _previous(registry: str | None, token: str | None, service: str) -> tuple[str, str]:
    """(version, launch template) the current instances say they replaced."""
    async with RegistryClient(registry, token=token) as api:
        _, instances = await api.instances(service)
    found = {
        (i.metadata.get(META_PREVIOUS_VERSION, ""), i.metadata.get(META_PREVIOUS_TEMPLATE, ""))
        for i in instances
    }
    found.discard(("", ""))
    if len(found) != 1:
        raise ConfigError(
            f"--undo: the instances of {service} record {len(found)} previous versions "
            f"({', '.join(sorted(v for v, _ in found)) or 'none'}); undo needs exactly one "
            "(give --version and --launch instead)"
        )
    version, template = found.pop()
    if not template:
        raise ConfigError(f"--undo: no launch command recorded for version {version}")
    return version, template


def rollout_command(
    service: Annotated[str, typer.Option(help="The service to roll.")] = ...,  # type: ignore[assignment]
    launch: Annotated[
        str | None, typer.Option(help="Command for a new instance, with {port} in it.")
    ] = None,
    version: Annotated[str | None, typer.Option(help="Version of the new instances.")] = None,
    registry: RegistryUrl = None,
    token: RegistryToken = None,
    kind: Annotated[str, typer.Option(help=f"Server family: {', '.join(KINDS)}.")] = "openai",
    model: Annotated[str | None, typer.Option(help="Model the new servers must serve.")] = None,
    max_surge: Annotated[int, typer.Option(help="New instances started ahead.", min=0)] = 1,
    max_unavailable: Annotated[int, typer.Option(help="Old instances taken out ahead.", min=0)] = 0,
    ready_timeout: Annotated[str, typer.Option(help="Longest wait for 'available'.")] = "120s",
    canary: Annotated[
        bool, typer.Option(help="Soak the first new instance and compare it (needs --gateway).")
    ] = False,
    canary_soak: Annotated[str, typer.Option(help="How long the canary takes traffic.")] = "30s",
    gateway: Annotated[
        str | None, typer.Option(help="The gateway whose figures judge the canary.")
    ] = None,
    log_dir: Annotated[
        Path, typer.Option(help="Where the new instances' agents write their logs.")
    ] = Path("fleetwatch-rollout-logs"),
    undo: Annotated[
        bool, typer.Option(help="Roll back to the version the current instances replaced.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Replace each instance of a service: start the new one under an agent, wait until it is
    available, drain the old one, wait until it has left; stop safely on any failure."""
    setup_logs("info")
    console = Console(stderr=as_json)
    if undo:
        version, launch = asyncio.run(_previous(registry, token, service))
        console.print(f"undo: back to version {version} ({launch})")
    if not launch or not version:
        raise ConfigError("--launch and --version are required (or --undo)")
    try:
        settings = RolloutSettings(
            service=service,
            launch=launch,
            version=version,
            registry_url=registry,
            token=token,
            kind=kind,
            model=model,
            max_surge=max_surge,
            max_unavailable=max_unavailable,
            ready_timeout=parse_duration(ready_timeout),
            canary=canary,
            canary_soak=parse_duration(canary_soak),
            gateway_url=gateway,
            log_dir=log_dir.resolve(),
        )
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
