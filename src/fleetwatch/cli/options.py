"""Options several commands share, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

RegistryUrl = Annotated[
    str | None,
    typer.Option("--registry", help="Registry URL (default $FLEETWATCH_REGISTRY or :8760)."),
]
RegistryToken = Annotated[
    str | None, typer.Option("--token", help="Registry token (default $FLEETWATCH_TOKEN).")
]
