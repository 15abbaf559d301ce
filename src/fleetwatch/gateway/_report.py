"""What one client request through the gateway came to, handed to listeners once it ended."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: Outcomes that say nothing of the service's quality: not counted in its SLO.
NOT_SERVICE_OUTCOMES = frozenset(
    {"unauthorized", "invalid_request", "model_not_found", "client_gone"}
)


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one reply, as the server counted them (None: not reported)."""

    prompt: int | None = None
    completion: int | None = None
    #: Prompt tokens the server served from its cache (``prompt_tokens_details.cached_tokens``,
    #: or llama.cpp's ``timings.cache_n``).
    cached: int | None = None


@dataclass(frozen=True, slots=True)
class AttemptReport:
    """One upstream try.

    ``outcome``: ok, upstream_5xx, busy (a 429/503 refusal), unreachable, failed (before the
    first byte), failed_mid_stream, refused (a continuation the server cannot take), timeout
    or cancelled (the client went away).
    """

    instance_id: str
    version: str
    outcome: str
    latency_s: float | None = None
    first_byte_s: float | None = None

    @property
    def ok(self) -> bool:
        """Whether this try answered without a server fault."""
        return self.outcome == "ok"


@dataclass(frozen=True, slots=True)
class RequestReport:
    """One client request, from its first byte in to its last byte out."""

    service: str
    path: str
    #: A bounded metric label: a model the serving instance advertises, else "other".
    model: str
    streaming: bool
    #: ok, upstream_5xx, saturated, no_instance, failed_before_first_byte,
    #: failed_after_first_byte, timeout, client_gone, unauthorized, invalid_request,
    #: model_not_found or error.
    outcome: str
    attempts: tuple[AttemptReport, ...] = ()
    elapsed_s: float = 0.0
    first_byte_s: float | None = None
    #: SSE data events relayed (streamed replies).
    events: int = 0
    usage: Usage = Usage()
    #: For a stream whose server broke after the first byte: recovered (continued on another
    #: instance to a whole reply), not_recoverable (the request cannot be continued) or
    #: failed (every continuation failed); None when nothing broke.
    recovery: str | None = None
    #: Seconds from each break to the continuation's first text reaching the client.
    seams_s: tuple[float, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the client got a complete, non-5xx answer."""
        return self.outcome == "ok"

    @property
    def counts_for_slo(self) -> bool:
        """Whether this request says something of the service's quality."""
        return self.outcome not in NOT_SERVICE_OUTCOMES

    @property
    def instance_id(self) -> str | None:
        """The instance that answered (the last attempt's), if any was tried."""
        return self.attempts[-1].instance_id if self.attempts else None

    @property
    def retries(self) -> int:
        """Attempts after the first."""
        return max(0, len(self.attempts) - 1)


Listener = Callable[[RequestReport], None]
