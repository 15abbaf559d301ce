"""Lean HTTP/1.1 on asyncio protocols, for the gateway's hot path: its front-end server and
its upstream client."""

from fleetwatch.http1.client import (
    ClosedBeforeReply,
    ConnectFailed,
    Origin,
    ReadTimeout,
    Response,
    UpstreamError,
    UpstreamPool,
)
from fleetwatch.http1.server import LeanServer

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
