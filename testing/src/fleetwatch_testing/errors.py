"""The harness's own error."""

from __future__ import annotations

from fleetwatch.errors import FleetwatchError


class SandboxError(FleetwatchError):
    """A throwaway local server (Redis, PostgreSQL, HTTP) could not be started or stopped."""
