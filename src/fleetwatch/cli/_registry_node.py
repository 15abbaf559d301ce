"""``fleetwatch serve``: the registry service."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fleetwatch.cli._logsetup import setup_logs
from fleetwatch.cli._options import TlsCert, TlsKey
from fleetwatch.config._registry import load_serve_config
from fleetwatch.errors import ConfigError
from fleetwatch.lifecycle import AppServer, wait_for_stop_signal
from fleetwatch.registry_api._node import RegistryNode
from fleetwatch.security._auth import TOKEN_ENV
from fleetwatch.security._networks import NetworkPolicy
from fleetwatch.security._tls import server_files

DEFAULT_PORT = 8760


async def run_registry(
    node: RegistryNode,
    host: str,
    port: int,
    console: Console,
    tls: tuple[str, str] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM."""
    async with AppServer(
        node.app(), host=host, port=port, tls=tls, limits=node.http_limits()
    ) as server:
        console.print(
            f"[bold]fleetwatch registry[/] on [cyan]{server.url}[/] "
            f"(store: {type(node.store).__name__}; API docs: {server.url}/docs)"
        )
        if not node.auth.configured:
            console.print(
                f"[yellow]no tokens configured: writes are refused; set {TOKEN_ENV} or add "
                "[[tokens]] to the config[/]"
            )
        signal = await wait_for_stop_signal()
        console.print(f"{signal.name}: stopping")


def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = DEFAULT_PORT,
    store: Annotated[
        str | None,
        typer.Option(help="'memory' (default, one machine) or redis://host:port/db (many nodes)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML: [registry], [monitor], [[tokens]].")
    ] = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    allow_network: Annotated[
        list[str] | None,
        typer.Option(
            help="CIDR instances may be in (repeatable; replaces the default loopback + private "
            "ranges). Link-local (169.254.0.0/16) only when named.",
        ),
    ] = None,
    ca_bundle: Annotated[
        str | None,
        typer.Option(
            "--ca-bundle",
            help="Verify https instances and agents against this CA bundle "
            "(default: [monitor] ca_bundle, $FLEETWATCH_CA_BUNDLE, or the system's CAs).",
        ),
    ] = None,
    controller: Annotated[
        bool,
        typer.Option(
            help="Run the deployment controller here (one node on a store leads, by a lease)."
        ),
    ] = True,
) -> None:
    """Run the registry: API, monitor of every instance, reaper, change feed, and the
    deployment controller."""
    setup_logs("info")
    console = Console()
    serve_config = load_serve_config(config)
    if allow_network:
        try:
            NetworkPolicy(allow_network)
        except ValueError as exc:
            raise ConfigError(f"--allow-network: {exc}") from None
        registry_section = serve_config.registry.model_copy(
            update={"allowed_networks": list(allow_network)}
        )
        serve_config = serve_config.model_copy(update={"registry": registry_section})
    if ca_bundle:
        if not Path(ca_bundle).is_file():
            raise ConfigError(f"--ca-bundle {ca_bundle!r} is not a file")
        monitor_section = serve_config.monitor.model_copy(update={"ca_bundle": ca_bundle})
        serve_config = serve_config.model_copy(update={"monitor": monitor_section})
    node = RegistryNode(
        serve_config, store_url=store or os.environ.get("FLEETWATCH_STORE"), controller=controller
    )
    tls = server_files(tls_cert, tls_key)
    asyncio.run(run_registry(node, host, port, console, tls))
