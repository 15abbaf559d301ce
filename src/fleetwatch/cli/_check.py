"""``fleetwatch check``: run the configured checks once, or keep running them and serve probes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.console import Group as Stack
from rich.live import Live
from starlette.applications import Starlette

from fleetwatch.cli._table import checks_table, status_text, transitions_table
from fleetwatch.config import HealthConfig, load_config
from fleetwatch.health import HealthProbes, HealthScheduler
from fleetwatch.lifecycle import AppServer, wait_for_stop_signal
from fleetwatch.observability._metrics import HealthMetrics, TaskMetrics, metrics_route

Background = Callable[[Console], Coroutine[Any, Any, None]]


def shared_http_client() -> httpx.AsyncClient:
    """The one pooled HTTP client every http and llm check of a process shares.

    ``trust_env=False``: a check of a local dependency must not be sent through an HTTP proxy
    configured for other traffic. Redirects are not followed: a health endpoint that redirects
    is misconfigured, and following one could lead the checker anywhere.
    """
    return httpx.AsyncClient(
        timeout=5.0,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        follow_redirects=False,
        trust_env=False,
    )


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6, ``:8080`` for 127.0.0.1)."""
    host, sep, port_text = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise typer.BadParameter(
            f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8080, [::1]:8080 or :8080)",
            param_hint="--serve",
        )
    return host, int(port_text)


def probes_for(config: HealthConfig, scheduler: HealthScheduler) -> HealthProbes:
    """Probe endpoints configured from the file's ``[service]`` and ``[aggregation]``."""
    return HealthProbes(
        scheduler,
        thresholds=config.aggregation.thresholds(),
        service_id=config.service.id,
        version=config.service.version,
        description=config.service.description,
    )


async def run_once(config: HealthConfig, *, as_json: bool, console: Console) -> int:
    """Run every check once; print a table (or health+json); 0 for pass/warn, 1 for fail."""
    async with shared_http_client() as http:
        scheduler = HealthScheduler(config.build(http))
        try:
            await scheduler.run_all(parallel=config.aggregation.parallel)
        finally:
            await scheduler.aclose()
        probes = probes_for(config, scheduler)
        code, document = probes.document(None, verbose=True)
    if as_json:
        console.print_json(json.dumps(document))
    else:
        console.print(checks_table(scheduler.states(), probes.verdict(None)))
    return 0 if code == 200 else 1


def health_endpoints_app(probes: HealthProbes) -> Starlette:
    """The probe endpoints plus ``/metrics`` (check durations and statuses)."""
    registry = CollectorRegistry()
    HealthMetrics(probes.scheduler, registry)
    TaskMetrics(registry)
    return Starlette(routes=[*probes.routes(), metrics_route(registry)])


async def serve(
    config: HealthConfig,
    host: str,
    port: int,
    *,
    console: Console,
    live: bool,
    duration: float = 0.0,
    background: Background | None = None,
) -> int:
    """Run checks on schedule and serve the probe endpoints until a signal or ``duration``."""
    async with shared_http_client() as http:
        scheduler = HealthScheduler(config.build(http))
        probes = probes_for(config, scheduler)
        app = health_endpoints_app(probes)
        async with scheduler, AppServer(app, host=host, port=port) as server:
            console.print(
                f"[bold]fleetwatch[/] probes on [cyan]{server.url}[/]: /livez /readyz "
                "/startupz /health /health/<check> (add ?verbose) /metrics - Ctrl-C to stop"
            )
            tasks: set[asyncio.Task[Any]] = {
                asyncio.create_task(wait_for_stop_signal(), name="fleetwatch.signal")
            }
            if duration > 0:
                tasks.add(asyncio.create_task(asyncio.sleep(duration), name="fleetwatch.timer"))
            helpers: list[asyncio.Task[Any]] = [
                asyncio.create_task(_display(probes, console, live), name="fleetwatch.ui")
            ]
            if background is not None:
                helpers.append(asyncio.create_task(background(console), name="fleetwatch.bg"))
            try:
                done, _ = await asyncio.wait(
                    tasks | set(helpers), return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for task in tasks | set(helpers):
                    task.cancel()
                await asyncio.gather(*tasks, *helpers, return_exceptions=True)
            for task in done:
                if not task.cancelled() and (error := task.exception()) is not None:
                    raise error
    console.print("stopped")
    return 0


async def _display(probes: HealthProbes, console: Console, live: bool) -> None:
    if live and console.is_terminal:
        await _live_table(probes, console)
    else:
        await _change_lines(probes, console)


async def _live_table(probes: HealthProbes, console: Console) -> None:
    """A table redrawn on every result, and at least once a second."""
    scheduler = probes.scheduler
    with Live(console=console, auto_refresh=False) as screen:
        while True:
            table = checks_table(scheduler.states(), probes.verdict(None))
            screen.update(Stack(table, transitions_table(scheduler.transitions)), refresh=True)
            await _next_change(scheduler, 1.0)


async def _change_lines(probes: HealthProbes, console: Console) -> None:
    """For logs: one line whenever any check's status changes."""
    scheduler = probes.scheduler
    last: dict[str, str] = {}
    while True:
        await _next_change(scheduler, 5.0)
        now = {name: s.status.value for name, s in scheduler.states().items()}
        if now != last:
            verdict = probes.verdict(None)
            line = status_text(verdict.status)
            line.append(" " + ", ".join(f"{n}={v}" for n, v in now.items()), style="default")
            console.print(line)
            last = now


async def _next_change(scheduler: HealthScheduler, at_most: float) -> None:
    try:
        async with asyncio.timeout(at_most):
            await scheduler.wait_for_change()
    except TimeoutError:
        pass


def check_command(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="TOML file with [[checks]] tables.")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the health+json document instead of a table.")
    ] = False,
    serve_at: Annotated[
        str | None,
        typer.Option(
            "--serve",
            metavar="HOST:PORT",
            help="Keep running checks on schedule and serve probe endpoints here.",
        ),
    ] = None,
    live: Annotated[
        bool, typer.Option("--live/--no-live", help="With --serve: a refreshing table.")
    ] = True,
) -> None:
    """Run health checks once (exit 0 pass/warn, 1 fail, 64 bad config), or serve probes."""
    console = Console()
    if serve_at is not None and as_json:
        raise typer.BadParameter("--json prints one run's result; it goes without --serve")
    health = load_config(config)
    if serve_at is not None:
        host, port = parse_listen(serve_at)
        code = asyncio.run(serve(health, host, port, console=console, live=live))
    else:
        code = asyncio.run(run_once(health, as_json=as_json, console=console))
    raise typer.Exit(code)
