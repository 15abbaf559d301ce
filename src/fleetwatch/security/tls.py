"""TLS: certificates for fleetwatch's servers, and verified connections for its clients.

Clients verify certificates by default, against the system's CAs, or against the bundle in
``ca_bundle`` / ``$FLEETWATCH_CA_BUNDLE`` (a private CA). Servers take a certificate and key.
"""

from __future__ import annotations

import functools
import os
import ssl
from pathlib import Path

from fleetwatch.errors import ConfigError

CA_BUNDLE_ENV = "FLEETWATCH_CA_BUNDLE"


def client_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """A verifying client context: the system's CAs, or ``ca_bundle`` (or the env's) instead."""
    bundle = ca_bundle or os.environ.get(CA_BUNDLE_ENV) or None
    if bundle is not None and not Path(bundle).is_file():
        raise ConfigError(f"CA bundle {bundle!r} is not a file")
    return ssl.create_default_context(cafile=bundle)


@functools.lru_cache(maxsize=8)
def _shared_context(bundle: str | None) -> ssl.SSLContext:
    return client_context(bundle)


def shared_client_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """:func:`client_context`, made once per bundle and shared: the monitor needs one for every
    HTTPS instance it watches, and loading CA certificates each time costs milliseconds. A
    rotated bundle file is read again when the process restarts."""
    return _shared_context(ca_bundle or os.environ.get(CA_BUNDLE_ENV) or None)


def server_files(cert: str | None, key: str | None) -> tuple[str, str] | None:
    """(certificate, key) for a server, both or neither, each an existing file."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    for label, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not Path(path).is_file():
            raise ConfigError(f"{label} {path!r} is not a file")
    return cert, key
