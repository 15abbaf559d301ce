"""``fleetwatch host --config host.toml``: this machine's daemon, carrying out its orders."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from fleetwatch.cli._logsetup import setup_logs
from fleetwatch.config._host import load_host_config
from fleetwatch.errors import ConfigError
from fleetwatch.hosts._daemon import HostDaemon, HostSettings


def host_settings(config: Path, environ: Mapping[str, str]) -> HostSettings:
    """The daemon's settings from ``host.toml``, its token read from ``environ``."""
    loaded = load_host_config(config)
    section = loaded.host
    token = environ.get(section.token_env)
    if not token:
        raise ConfigError(
            f"{config}: [host] token_env: environment variable {section.token_env} is not set "
            "(the host needs a token with the host scope, bound to its id)"
        )
    return HostSettings(
        host_id=section.id,
        address=section.address,
        registry_url=section.registry,
        token=token,
        state_dir=Path(section.state_dir),
        profiles=loaded.launch_profiles(),
        labels=section.labels,
        capacity=section.capacity,
        ttl=section.ttl,
        token_env=section.token_env,
    )


def host_command(
    config: Annotated[Path, typer.Option(help="The host's configuration (host.toml).")] = ...,  # type: ignore[assignment]
) -> None:
    """Report this host to the registry, and start and stop instances on its orders, only as
    its own configuration's launch profiles allow. Instances outlive the daemon; started
    again, it adopts them.

    Example: FLEETWATCH_HOST_TOKEN=... fleetwatch host --config /etc/fleetwatch/host.toml
    """
    setup_logs("info")
    settings = host_settings(config, os.environ)
    raise typer.Exit(asyncio.run(HostDaemon(settings).run()))
