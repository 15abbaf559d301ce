"""TLS: certificates for fleetwatch's servers, and verified connections for its clients.

Clients verify certificates by default, against the system's CAs, or against the bundle in
``ca_bundle`` / ``$FLEETWATCH_CA_BUNDLE`` (a private CA). Servers take a certificate and key.
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

from fleetwatch.errors import ConfigError

CA_BUNDLE_ENV = "FLEETWATCH_CA_BUNDLE"

log = logging.getLogger("fleetwatch.tls")


def client_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """A verifying client context: the system's CAs, or ``ca_bundle`` (or the env's) instead."""
    bundle = ca_bundle or os.environ.get(CA_BUNDLE_ENV) or None
    if bundle is not None and not Path(bundle).is_file():
        raise ConfigError(f"CA bundle {bundle!r} is not a file")
    return ssl.create_default_context(cafile=bundle)


Version = tuple[int, int, int, int] | None
#: bundle -> (the file's version last looked at, the context last loaded). System CAs: version
#: None. A version that failed to load is kept with the older context: tried again only once
#: the file changes.
_shared: dict[str | None, tuple[Version, ssl.SSLContext]] = {}


def _version(bundle: str | None) -> Version:
    """What changes when the file is replaced: a rename (inode, ctime) or a rewrite (mtime,
    size), even when a copy keeps the old modification time."""
    if bundle is None:
        return None
    try:
        stat = os.stat(bundle)
    except OSError:
        return None
    return stat.st_ino, stat.st_ctime_ns, stat.st_mtime_ns, stat.st_size


def shared_client_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """:func:`client_context`, made once per bundle and shared: the monitor needs one for every
    HTTPS instance it watches, and loading CA certificates each time costs milliseconds.

    A rotated bundle (see :func:`_version`) is read again at the next call; callers ask at every
    new connection. While the file is missing or cannot be parsed (a rotation half done), the
    last good context stays in use, with one warning per broken version.
    """
    bundle = ca_bundle or os.environ.get(CA_BUNDLE_ENV) or None
    version = _version(bundle)
    cached = _shared.get(bundle)
    if cached is not None and cached[0] == version:
        return cached[1]
    try:
        context = client_context(bundle)
    except (ConfigError, ssl.SSLError, OSError) as exc:
        if cached is None:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"CA bundle {bundle!r} cannot be loaded: {exc}") from exc
        _shared[bundle] = (version, cached[1])  # warned once per broken version
        log.warning("tls.ca_bundle_unreadable %s: %s; keeping the CAs read before", bundle, exc)
        return cached[1]
    if cached is not None:
        log.info("tls.ca_bundle_reloaded %s", bundle)
    _shared[bundle] = (version, context)
    return context


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
