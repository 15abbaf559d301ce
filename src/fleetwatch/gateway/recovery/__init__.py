"""Streams that survive a dying server: a reply broken after its first byte is continued on
another instance and spliced into the client's stream (see docs/recovery.md)."""

from fleetwatch.gateway.recovery.continuation import StreamPlan, continue_stream
from fleetwatch.gateway.recovery.llamacpp import ContinuationFailed, ContinuerBusy
from fleetwatch.gateway.recovery.policy import (
    CHAT,
    COMPLETIONS,
    CONTINUABLE_KINDS,
    RecoverySettings,
    greedy,
    unrecoverable,
)
from fleetwatch.gateway.recovery.seam import SeamStop
from fleetwatch.gateway.recovery.transcript import BrokenStream, OpenAIStreamReader, Transcript

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
