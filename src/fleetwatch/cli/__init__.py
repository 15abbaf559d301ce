"""The ``fleetwatch`` command line.

Exit codes: 0 pass or warn, 1 fail (so ``fleetwatch check`` works as a Docker ``HEALTHCHECK``,
where 2 is reserved, and as a Kubernetes exec probe, where warn must keep serving), 64 for usage
and configuration errors (``EX_USAGE`` from sysexits.h).
"""

from __future__ import annotations

import sys

import click
import typer

from fleetwatch.cli.app import app
from fleetwatch.errors import FleetwatchError

EXIT_USAGE = 64


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script's entry point)."""
    try:
        result = app(args=argv, standalone_mode=False, prog_name="fleetwatch")
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        return EXIT_USAGE
    except click.UsageError as exc:
        exc.show()
        return EXIT_USAGE
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except FleetwatchError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        return EXIT_USAGE
    return int(result) if isinstance(result, int) else 0


def run() -> None:
    """``python -m fleetwatch``."""
    sys.exit(main())


__all__ = ["EXIT_USAGE", "app", "main", "typer"]
