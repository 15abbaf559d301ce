"""The one exception tree of fleetwatch.

Every error fleetwatch raises on purpose derives from :class:`FleetwatchError`, so callers
can catch the whole family at one boundary. Errors carry the thing they concern (a config
file, a check, a field) and say how to fix it.

Health checks never raise out of the check runner: a failing check becomes an ``unhealthy``
result naming the error type (see ``fleetwatch.health.run_check``).
"""

from __future__ import annotations

__all__ = [
    "REGISTRY_ERRORS_BY_STATUS",
    "ConfigError",
    "Conflict",
    "Fenced",
    "FleetwatchError",
    "Forbidden",
    "IndexReset",
    "InstanceGone",
    "InstanceNotFound",
    "MissingExtraError",
    "RegistryError",
    "RegistryUnavailable",
    "ServeError",
    "Unauthorized",
]


class FleetwatchError(Exception):
    """Root of every error fleetwatch raises on purpose."""


class ConfigError(FleetwatchError):
    """A configuration file or value is invalid.

    The message names the file, the check, the field, the bad value and what is allowed.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        check: str | None = None,
        field: str | None = None,
    ) -> None:
        self.source = source
        self.check = check
        self.field = field
        where = [part for part in (source, f"check {check!r}" if check else None) if part]
        prefix = ": ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ServeError(FleetwatchError):
    """An HTTP server could not start: the address is in use, or start-up got stuck."""


class RegistryError(FleetwatchError):
    """Root of the registry's errors; each names the service and instance it concerns.

    ``status_code`` is its HTTP status: the server answers it, and the client raises the
    error again from it (:data:`REGISTRY_ERRORS_BY_STATUS`, the one map used both ways)."""

    status_code: int = 500

    def __init__(
        self, message: str, *, service: str | None = None, instance_id: str | None = None
    ) -> None:
        super().__init__(message)
        #: The service and instance the error concerns, where there is one.
        self.service = service
        self.instance_id = instance_id


class RegistryUnavailable(RegistryError):
    """The registry's store (or the registry service) cannot be reached right now."""

    status_code = 503


class InstanceGone(RegistryError):
    """An operator deregistered this instance; its tombstone refuses heartbeats and re-registration.

    The HTTP API answers ``410 Gone`` so the instance's agent stops instead of bringing it back.
    """

    status_code = 410


class IndexReset(RegistryError):
    """The change index a client holds is no longer meaningful: it is ahead of the registry's
    (the store restarted without persistence) or older than the history kept. The client must
    fetch the full state again, as Consul clients do when the index goes backwards."""


class InstanceNotFound(RegistryError):
    """No such instance: a heartbeat for it means the registry lost it (restart): register again."""

    status_code = 404


class Conflict(RegistryError):
    """The request is well formed but contradicts the instance's state (409)."""

    status_code = 409


class Fenced(Conflict):
    """A leader's write under an epoch that no longer holds the lease: another node leads now,
    and this one must stop acting (409)."""


class Forbidden(RegistryError):
    """The caller's token may not do this (wrong scope, or another team's instance)."""

    status_code = 403


class Unauthorized(RegistryError):
    """No valid token was presented for an operation that needs one."""

    status_code = 401


#: The registry errors an HTTP status stands for, as the client raises them again.
REGISTRY_ERRORS_BY_STATUS: dict[int, type[RegistryError]] = {
    kind.status_code: kind
    for kind in (
        Unauthorized,
        Forbidden,
        InstanceNotFound,
        Conflict,
        InstanceGone,
        RegistryUnavailable,
    )
}


class MissingExtraError(FleetwatchError, ImportError):
    """A feature needs an optional dependency that is not installed.

    The message names the feature, the missing module and the extra that installs it, such as
    ``pip install 'fleetwatch[redis]'``. It is also an :class:`ImportError`, which is what it
    stands for.
    """

    def __init__(self, message: str, *, extra: str) -> None:
        super().__init__(message)
        self.extra = extra
