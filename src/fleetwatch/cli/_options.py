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
TlsCert = Annotated[
    str | None, typer.Option("--tls-cert", help="Serve HTTPS with this certificate (PEM).")
]
TlsKey = Annotated[str | None, typer.Option("--tls-key", help="The certificate's key (PEM).")]
CaBundle = Annotated[
    str | None,
    typer.Option(
        "--ca-bundle", help="Verify servers against this CA bundle (default $FLEETWATCH_CA_BUNDLE)."
    ),
]
