"""The ``fleetwatch`` command line.

Exit codes: 0 pass or warn, 1 fail (so ``fleetwatch check`` works as a Docker ``HEALTHCHECK``,
where 2 is reserved, and as a Kubernetes exec probe, where warn must keep serving), 64 for usage
and configuration errors (``EX_USAGE`` from sysexits.h), 69 when the registry cannot be reached
(``EX_UNAVAILABLE``), 130 when interrupted.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape

from fleetwatch.cli._app import app
from fleetwatch.errors import FleetwatchError, RegistryUnavailable

EXIT_USAGE = 64
#: sysexits.h EX_UNAVAILABLE: the registry (or another service) cannot be reached.
EXIT_UNAVAILABLE = 69
#: Click's own exit status for usage errors, which fleetwatch reports as EXIT_USAGE instead.
_CLICK_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script's entry point)."""
    try:
        app(args=argv, prog_name="fleetwatch")
    except SystemExit as exit_:
        return _exit_code(exit_.code)
    except FleetwatchError as exc:
        # Escaped: a message may hold brackets, such as pip install 'fleetwatch[redis]'.
        message = f"[bold red]error:[/] {escape(str(exc))}"
        Console(stderr=True).print(message, highlight=False, soft_wrap=True)
        return EXIT_UNAVAILABLE if isinstance(exc, RegistryUnavailable) else EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return 0


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if not isinstance(code, int):
        print(code, file=sys.stderr)
        return 1
    return EXIT_USAGE if code == _CLICK_USAGE else code


def run() -> None:
    """``python -m fleetwatch``."""
    sys.exit(main())


__all__ = ["EXIT_USAGE", "app", "main"]
