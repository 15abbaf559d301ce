"""``fleetwatch demo``: real checks against a Redis and a PostgreSQL the demo starts itself."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import textwrap
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.syntax import Syntax

from fleetwatch.cli.check import serve
from fleetwatch.config import load_config
from fleetwatch.sandbox import BackendProcess, PostgresServer, RedisServer, free_port

CHAOS_AFTER_S = 15.0
CHAOS_OUTAGE_S = 12.0


def _config_text(redis: RedisServer, postgres: PostgresServer, api_port: int) -> str:
    """The demo's checks: the two datastores (critical), a TCP port, the API, the host."""
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
        interval = "2s"
        timeout = "1s"

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
        name = "model-api"
        type = "http"
        url = "http://127.0.0.1:{api_port}/health"
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


def demo_command(
    duration: Annotated[
        float, typer.Option(help="Seconds to run; 0 runs until Ctrl-C.", min=0)
    ] = 0.0,
    port: Annotated[
        int, typer.Option(help="Probe server port (a free one if taken).", min=0, max=65535)
    ] = 8765,
    chaos: Annotated[
        bool,
        typer.Option(help=f"Stop Redis after {CHAOS_AFTER_S:g}s for {CHAOS_OUTAGE_S:g}s."),
    ] = True,
) -> None:
    """Start Redis, PostgreSQL and an HTTP API on loopback, check them live, serve probes."""
    console = Console()
    console.rule("[bold]fleetwatch demo")
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fleetwatch-demo-")))
        with console.status("starting redis-server, PostgreSQL and an HTTP API on loopback..."):
            redis = stack.enter_context(RedisServer())
            postgres = stack.enter_context(PostgresServer())
            api = stack.enter_context(BackendProcess(delay=0.02))
        console.print(f"redis-server  {redis.url}  (pid {redis.pid})")
        console.print(f"postgres      {postgres.dsn}  (pid {postgres.pid})")
        console.print(f"HTTP API      {api.url}/health  (pid {api.pid})")
        config_path = workdir / "checks.toml"
        config_path.write_text(_config_text(redis, postgres, api.port))
        console.print(f"\nconfig: {config_path}")
        console.print(Syntax(config_path.read_text(), "toml", theme="ansi_dark"))
        probe_port = _port_or_free(port)
        console.print(
            f"try: curl -s 'http://127.0.0.1:{probe_port}/readyz?verbose' | python3 -m json.tool\n"
        )

        async def outage(console: Console) -> None:
            await asyncio.sleep(CHAOS_AFTER_S)
            console.log("[bold red]chaos:[/] stopping Redis; watch `cache` fail and /readyz 503")
            await asyncio.to_thread(redis.stop)
            await asyncio.sleep(CHAOS_OUTAGE_S)
            console.log("[bold green]chaos:[/] restarting Redis; `cache` recovers after rise=2")
            await asyncio.to_thread(redis.start)
            await asyncio.Event().wait()

        code = asyncio.run(
            serve(
                load_config(config_path),
                "127.0.0.1",
                probe_port,
                console=console,
                live=True,
                duration=duration,
                background=outage if chaos else None,
            )
        )
    raise typer.Exit(code)
