"""``fleetwatch demo``: the main job on loopback, with the embedded (in-memory) store.

It starts a throwaway Redis and PostgreSQL, a registry (``fleetwatch serve``, in-memory store),
a gateway (``fleetwatch gateway``) and three real LLM servers (llama.cpp's llama-server serving
SmolLM2-135M, built and cached on first use), each under a detached ``fleetwatch agent``, plus a
probe server running real checks against Redis and PostgreSQL. Then a narrated scenario with
figures measured as it runs (cli/demo_scenario.py): traffic through the gateway with the
``openai`` SDK, a ``kill -9`` of one instance (time until it left discovery, failed requests),
and a rollout to a second version under traffic (failed requests). Then the fleet stays up with
a live view (as ``fleetwatch status --watch``) and, with ``--chaos``, a Redis outage the probe
server's readiness reports; Ctrl-C (or ``--duration``) drains everything and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import tempfile
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from fleetwatch.cli._check import health_endpoints_app, probes_for, shared_http_client
from fleetwatch.cli._logsetup import setup_logs
from fleetwatch.cli._status import render, snapshot
from fleetwatch.cli._table import checks_table, transitions_table
from fleetwatch.config import HealthConfig, load_config
from fleetwatch.config._registry import ServeConfig
from fleetwatch.discovery import RegistryClient
from fleetwatch.errors import RegistryError
from fleetwatch.gateway import Gateway, GatewaySettings
from fleetwatch.health import HealthProbes, HealthScheduler
from fleetwatch.lifecycle import AppServer, wait_for_stop_signal
from fleetwatch.registry_api._node import RegistryNode
from fleetwatch.security._auth import Scope, Token, TokenAuth
from fleetwatch_testing import PostgresServer, RedisServer, free_port
from fleetwatch_testing.demo_scenario import Scenario
from fleetwatch_testing.llama_build import ensure_llama_server, ensure_model

Step = tuple[float, str, Callable[[], Awaitable[None]]]


def _config_text(redis: RedisServer, postgres: PostgresServer, api_port: int) -> str:
    """The probe server's checks: the two datastores (critical), a TCP port, an API, the host."""
    return textwrap.dedent(
        f"""\
        [service]
        id = "fleetwatch-demo"
        description = "probe server checking the Redis and PostgreSQL this demo started"

        [[checks]]
        name = "cache"
        type = "redis"
        url = "{redis.url}"
        critical = true
        interval = "1s"
        timeout = "500ms"

        [[checks]]
        name = "db"
        type = "postgres"
        dsn = "{postgres.dsn}"
        critical = true
        interval = "2s"
        timeout = "2s"

        [[checks]]
        name = "db-port"
        type = "tcp"
        host = "127.0.0.1"
        port = {postgres.port}
        interval = "2s"

        [[checks]]
        name = "gateway"
        type = "http"
        url = "http://127.0.0.1:{api_port}/readyz"
        interval = "2s"
        timeout = "1s"
        slow_after = "200ms"

        [[checks]]
        name = "host"
        type = "system"
        interval = "5s"
        groups = ["liveness", "readiness"]
        """
    )


def _port_or_free(port: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


@dataclass
class _Fleet:
    """What the demo runs, once the servers are up."""

    config: HealthConfig
    probe_port: int
    registry_port: int
    gateway_port: int
    token: str
    workdir: Path
    script: list[Step]
    duration: float


async def _run_fleet(fleet: _Fleet, console: Console) -> None:
    auth = TokenAuth([Token("demo", fleet.token, Scope.ALL)])
    node = RegistryNode(ServeConfig(), store_url="memory", auth=auth)
    async with shared_http_client() as http:
        scheduler = HealthScheduler(fleet.config.build(http))
        probes = probes_for(fleet.config, scheduler)
        async with (
            scheduler,
            AppServer(health_endpoints_app(probes), port=fleet.probe_port) as probe_server,
            AppServer(node.app(), port=fleet.registry_port, limits=node.http_limits()) as registry,
            RegistryClient(registry.url, token=fleet.token) as api,
            Gateway(
                GatewaySettings(
                    service="llm", registry_url=registry.url, registry_token=fleet.token
                )
            ) as gateway,
            gateway.server(port=fleet.gateway_port) as gateway_server,
        ):
            await api.register(
                "checks",
                "probe-server",
                {
                    "host": "127.0.0.1",
                    "port": probe_server.port,
                    "check": {"path": "/readyz"},
                    "metadata": {"depends_on": "redis,postgres,llm"},
                },
            )
            scenario = Scenario(
                registry.url,
                gateway_server.url,
                fleet.token,
                fleet.workdir / "logs",
                lambda line: console.log(line, highlight=False),
            )
            console.print(
                f"dashboard [cyan]{registry.url}/ui/#token={fleet.token}[/] "
                "(open it to watch the scenario live)"
            )
            try:
                await _narrate(scenario, console)
                console.print(
                    f"\ndashboard [cyan]{registry.url}/ui/#token={fleet.token}[/]\n"
                    f"registry [cyan]{registry.url}[/] (API docs {registry.url}/docs)\n"
                    f"gateway  [cyan]{gateway_server.url}/v1[/] (OpenAI base URL; figures at "
                    f"{gateway_server.url}/v1/gateway/stats)\nprobe server [cyan]{probe_server.url}"
                    f"[/]\nin another terminal: [bold]FLEETWATCH_TOKEN={fleet.token} fleetwatch "
                    f"status --watch --registry {registry.url}[/]\n"
                )
                await _stay_up(fleet, api, probes, console)
            finally:
                console.log("stopping: every instance drains, then everything stops")
                await scenario.stop()


async def _narrate(scenario: Scenario, console: Console) -> None:
    console.rule("[bold]scenario")
    await scenario.run()
    console.rule()


async def _stay_up(
    fleet: _Fleet, api: RegistryClient, probes: HealthProbes, console: Console
) -> None:
    """The live view (and the scripted Redis outage) until Ctrl-C or the duration ends."""
    tasks = [
        asyncio.create_task(_play(fleet.script, console), name="fleetwatch.demo-script"),
        asyncio.create_task(wait_for_stop_signal(), name="fleetwatch.signal"),
        asyncio.create_task(_show(api, probes, console), name="fleetwatch.ui"),
    ]
    if fleet.duration > 0:
        tasks.append(asyncio.create_task(asyncio.sleep(fleet.duration), name="fleetwatch.timer"))
    try:
        done, _ = await asyncio.wait(tasks[1:], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error


async def _play(script: list[Step], console: Console) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    for at, message, action in script:
        await asyncio.sleep(max(0.0, started + at - loop.time()))
        console.log(message)
        await action()


async def _show(api: RegistryClient, probes: HealthProbes, console: Console) -> None:
    """The registry's view above the probe server's checks, redrawn twice a second (in a
    terminal), or a line whenever a status changes (in a log)."""
    scheduler = probes.scheduler
    last = ""
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    with live if live is not None else contextlib.nullcontext():
        while True:
            view: RenderableType
            try:
                index, found = await snapshot(api, ["llm", "checks"])
                view = render(index, found, api.url)
                line = ", ".join(
                    f"{i.instance_id}={i.status.value}" for items in found.values() for i in items
                )
            except RegistryError as exc:
                view, line = Text(f"registry unreachable: {exc}", style="red"), "unreachable"
            if live is not None:
                checks = checks_table(
                    scheduler.states(), probes.verdict(None), title="probe server"
                )
                live.update(
                    Group(view, checks, transitions_table(scheduler.transitions)), refresh=True
                )
            elif line != last:
                console.print(f"registry: {line}")
                last = line
            await asyncio.sleep(0.5)


def demo_command(
    duration: Annotated[
        float,
        typer.Option(help="Seconds to stay up after the scenario; 0 stays until Ctrl-C.", min=0),
    ] = 0.0,
    port: Annotated[
        int, typer.Option(help="Probe server port (a free one if taken).", min=0, max=65535)
    ] = 8765,
    registry_port: Annotated[
        int, typer.Option(help="Registry port (a free one if taken).", min=0, max=65535)
    ] = 8760,
    gateway_port: Annotated[
        int, typer.Option(help="Gateway port (a free one if taken).", min=0, max=65535)
    ] = 8780,
    chaos: Annotated[
        bool, typer.Option(help="After the scenario, script a Redis outage and its recovery.")
    ] = True,
) -> None:
    """The main job on loopback: registry, gateway, three SmolLM2 servers under agents; traffic,
    a kill -9 and a rollout under traffic, with the figures; then a live view."""
    setup_logs("warning")  # the demo narrates; logs only for what goes wrong
    console = Console()
    console.rule("[bold]fleetwatch demo")
    ensure_model()  # first run: download SmolLM2 and build llama-server, with progress
    ensure_llama_server()
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fleetwatch-demo-")))
        with console.status("starting Redis and PostgreSQL on loopback..."):
            redis = stack.enter_context(RedisServer())
            postgres = stack.enter_context(PostgresServer())
        console.print(f"redis-server  {redis.url}")
        console.print(f"postgres      {postgres.dsn}")
        gateway_port = _port_or_free(gateway_port)
        config_path = workdir / "checks.toml"
        config_path.write_text(_config_text(redis, postgres, gateway_port))
        console.print(f"probe server checks: {config_path}\n")

        async def stop_redis() -> None:
            await asyncio.to_thread(redis.stop)

        async def start_redis() -> None:
            await asyncio.to_thread(redis.start)

        script: list[Step] = (
            [
                (
                    5,
                    "[red]chaos:[/] stopping Redis: the probe server's readiness fails",
                    stop_redis,
                ),
                (20, "[green]recovery:[/] Redis back; readiness passes after rise", start_redis),
            ]
            if chaos
            else []
        )
        fleet = _Fleet(
            load_config(config_path),
            _port_or_free(port),
            _port_or_free(registry_port),
            gateway_port,
            secrets.token_urlsafe(12),
            workdir,
            script,
            duration,
        )
        asyncio.run(_run_fleet(fleet, console))
    console.print("stopped")
