"""``fleetwatch status``: services and instances, once, live, or as JSON."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from fleetwatch.deployments._client import DeploymentsClient
from fleetwatch.deployments._model import Deployment
from fleetwatch.discovery import RegistryClient
from fleetwatch.errors import RegistryError
from fleetwatch.registry._model import Instance, InstanceStatus
from fleetwatch.slo import SloReport

_STYLE = {
    InstanceStatus.AVAILABLE: "bold green",
    InstanceStatus.DEGRADED: "bold yellow",
    InstanceStatus.STARTING: "cyan",
    InstanceStatus.UNAVAILABLE: "bold red",
    InstanceStatus.MAINTENANCE: "magenta",
    InstanceStatus.DRAINING: "blue",
}


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


async def snapshot(
    client: RegistryClient, services: list[str] | None
) -> tuple[int, dict[str, list[Instance]]]:
    """The registry's index and the instances of every (or the named) service."""
    index, counts = await client.services()
    names = services or sorted(counts)
    found = {}
    for name in names:
        _, instances = await client.instances(name)
        found[name] = instances
    return index, found


def render(index: int, found: dict[str, list[Instance]], url: str) -> Table:
    """A Rich table, one row per instance."""
    now = time.time()
    table = Table(title=f"fleetwatch registry {url} (index {index})", title_justify="left")
    widths = {"service": 7, "instance": 8, "address": 12, "status": 11}
    for column in (
        "service",
        "instance",
        "address",
        "status",
        "for",
        "age",
        "last check",
        "output",
    ):
        table.add_column(column, min_width=widths.get(column), overflow="fold")
    for service, instances in found.items():
        if not instances:
            table.add_row(service, "-", "", Text("no instances", style="dim"), "", "", "", "")
        for instance in instances:
            last = None if instance.last_check_at is None else now - instance.last_check_at
            failing = (
                f" ({instance.consecutive_failures} failing)"
                if instance.consecutive_failures
                else ""
            )
            table.add_row(
                service,
                instance.instance_id,
                instance.base_url,
                Text(instance.status.value, style=_STYLE[instance.status]),
                _ago(now - instance.status_since) if instance.status_since else "",
                _ago(now - instance.registered_at) if instance.registered_at else "",
                _ago(last) + failing,
                instance.last_check_output[:80],
            )
    return table


def slo_table(slos: list[SloReport]) -> Table:
    """Objectives with their SLIs, budget left, burn rates and alerts."""
    table = Table(title="service-level objectives", title_justify="left")
    for column in (
        "service",
        "objective",
        "availability",
        "capacity",
        "requests ok",
        "first token in time",
        "budget left",
        "burn 5m/1h/6h",
        "alert",
    ):
        table.add_column(column)

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:.3f}%"

    for slo in slos:
        rates = slo.burn_rates
        burn = "/".join(
            "-" if rates.get(w) is None else f"{rates[w]:g}" for w in ("5m", "1h", "6h")
        )
        alerts = [
            name for name, on in (("fast_burn", slo.fast_burn), ("slow_burn", slo.slow_burn)) if on
        ]
        table.add_row(
            slo.service,
            pct(slo.objective),
            pct(slo.availability),
            pct(slo.capacity),
            pct(slo.request_success),
            pct(slo.latency_within_threshold),
            pct(slo.budget_remaining),
            burn,
            Text(", ".join(alerts), style="bold red") if alerts else Text("ok", style="green"),
        )
    return table


def rollouts_table(deployments: list[Deployment]) -> Table:
    """Deployments and their rollouts as they stand (``fleetwatch rollout``)."""
    table = Table(title="deployments", title_justify="left")
    for column in ("service", "revision", "version", "replicas", "phase", "progress"):
        table.add_column(column)
    for d in deployments:
        phase = "paused" if d.paused else d.progress.phase.value
        style = {"complete": "green", "failed": "bold red", "paused": "yellow"}.get(phase, "cyan")
        table.add_row(
            d.service,
            str(d.revision),
            d.spec.version,
            f"{d.progress.updated}/{d.spec.replicas}",
            Text(phase, style=style),
            d.progress.message,
        )
    return table


async def _rollouts(client: DeploymentsClient) -> list[Deployment]:
    """The deployments, or none when the registry predates them (or denies the read)."""
    try:
        return (await client.deployments())[1]
    except RegistryError:
        return []


def _view(index: int, found: Any, url: str, deployments: list[Deployment]) -> Any:
    if not deployments:
        return render(index, found, url)
    return Group(render(index, found, url), rollouts_table(deployments))


async def _run(
    registry: str | None,
    services: list[str] | None,
    watch: bool,
    as_json: bool,
    console: Console,
    *,
    slo: bool = False,
) -> None:
    async with DeploymentsClient(registry) as client:
        index, found = await snapshot(client, services)
        deployments = await _rollouts(client)
        slos = await client.slos() if slo else []
        if as_json:
            payload: dict[str, Any] = {
                "registry": client.url,
                "index": index,
                "services": {name: [i.to_dict() for i in items] for name, items in found.items()},
            }
            if slo:
                payload["slos"] = [one.as_dict() for one in slos]
            if deployments:
                payload["deployments"] = [d.to_dict() for d in deployments]
            console.print_json(json.dumps(payload))
            return
        if not watch:
            console.print(_view(index, found, client.url, deployments))
            if slo:
                console.print(slo_table(slos))
            return
        view = _view(index, found, client.url, deployments)
        with Live(view, console=console, auto_refresh=False) as live:
            while True:
                try:
                    # Wake on membership changes, and at least every second for check times.
                    await client.services(index=index, wait=1.0)
                    index, found = await snapshot(client, services)
                    deployments = await _rollouts(client)
                    live.update(_view(index, found, client.url, deployments), refresh=True)
                except RegistryError as exc:
                    live.update(
                        Text(f"registry unreachable, retrying: {exc}", style="red"), refresh=True
                    )
                    await asyncio.sleep(1.0)


def status_command(
    registry: Annotated[
        str | None,
        typer.Option(help="Registry URL (default: $FLEETWATCH_REGISTRY or http://127.0.0.1:8760)."),
    ] = None,
    service: Annotated[
        list[str] | None, typer.Option("--service", "-s", help="Only these services (repeatable).")
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Keep the table live.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    slo: Annotated[
        bool, typer.Option("--slo", help="Also show service-level objectives and error budgets.")
    ] = False,
) -> None:
    """Services and instances with status, age and last check. Reads $FLEETWATCH_TOKEN."""
    if watch and as_json:
        raise typer.BadParameter("--json prints one snapshot; it goes without --watch")
    console = Console()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(registry, service, watch, as_json, console, slo=slo))
