"""Lean HTTP/1.1 on asyncio protocols, for the gateway's hot path: its front-end server and
its upstream client. It needs httptools, which the ``gateway`` extra installs."""

from fleetwatch._extras import missing_extra

try:
    import httptools  # noqa: F401 - checked once here, so every module of the part says the same
except ImportError as error:
    raise missing_extra("gateway", "the gateway (its HTTP/1.1 layer, fleetwatch.http1)") from error

from fleetwatch.http1._client import (
    ClosedBeforeReply,
    ConnectFailed,
    Origin,
    ReadTimeout,
    Response,
    UpstreamError,
    UpstreamPool,
)
from fleetwatch.http1._server import LeanServer

__all__ = [
    "ClosedBeforeReply",
    "ConnectFailed",
    "LeanServer",
    "Origin",
    "ReadTimeout",
    "Response",
    "UpstreamError",
    "UpstreamPool",
]
