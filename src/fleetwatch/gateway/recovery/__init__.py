"""Streams that survive a dying server: a reply broken after its first byte is continued on
another instance and spliced into the client's stream (see docs/recovery.md)."""

from fleetwatch.gateway.recovery._continuation import StreamPlan, continue_stream
from fleetwatch.gateway.recovery._llamacpp import ContinuationFailed, ContinuerBusy
from fleetwatch.gateway.recovery._policy import (
    CHAT,
    COMPLETIONS,
    CONTINUABLE_KINDS,
    RecoverySettings,
    greedy,
    unrecoverable,
)
from fleetwatch.gateway.recovery._seam import SeamStop
from fleetwatch.gateway.recovery._transcript import BrokenStream, OpenAIStreamReader, Transcript

__all__ = [
    "CHAT",
    "COMPLETIONS",
    "CONTINUABLE_KINDS",
    "BrokenStream",
    "ContinuationFailed",
    "ContinuerBusy",
    "OpenAIStreamReader",
    "RecoverySettings",
    "SeamStop",
    "StreamPlan",
    "Transcript",
    "continue_stream",
    "greedy",
    "unrecoverable",
]
