"""``fleetwatch --log-format json|console [--log-level L] COMMAND``: how commands log."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from fleetwatch.observability._logs import FORMATS, configure_logging

_chosen: dict[str, str | None] = {"format": None, "level": None}


def global_options(
    log_format: Annotated[
        str | None,
        typer.Option(
            help=f"Log lines as {' or '.join(FORMATS)} (default $FLEETWATCH_LOG_FORMAT or console)."
        ),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="debug, info, warning or error (default per command).")
    ] = None,
) -> None:
    """Discover, health-check and replace LLM inference servers without dropping requests."""
    chosen = log_format or os.environ.get("FLEETWATCH_LOG_FORMAT") or "console"
    if chosen not in FORMATS:
        raise typer.BadParameter(
            f"--log-format must be one of {', '.join(FORMATS)}, got {chosen!r}"
        )
    if log_level is not None and log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter(
            f"--log-level must be debug, info, warning or error, got {log_level!r}"
        )
    _chosen["format"], _chosen["level"] = chosen, log_level


def setup_logs(default_level: str) -> None:
    """Configure logging for a command (servers log at info, one-shot commands at warning)."""
    configure_logging(_chosen["format"] or "console", _chosen["level"] or default_level)
