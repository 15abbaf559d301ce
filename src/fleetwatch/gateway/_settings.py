"""What a gateway is told."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from fleetwatch.discovery._outlier import OutlierPolicy
from fleetwatch.gateway.recovery._policy import RecoverySettings
from fleetwatch.routing import RouterSettings, Strategy, strategy_named

#: A generation can legitimately take minutes; a request taking longer is stuck.
DEFAULT_REQUEST_TIMEOUT_S = 300.0
#: Requests one instance serves at once from this gateway (llama.cpp and vLLM queue the rest
#: themselves, but a queue here can still go to another instance).
DEFAULT_PER_INSTANCE_LIMIT = 8
DEFAULT_QUEUE_LIMIT = 256
DEFAULT_QUEUE_TIMEOUT_S = 10.0
#: OpenAI request bodies are small; images as base64 are the large case.
DEFAULT_MAX_BODY_BYTES = 16 << 20
CONNECT_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """A gateway for one service."""

    service: str
    registry_url: str | None = None
    registry_token: str | None = None
    #: How requests are routed (the ``[router]`` section).
    router: RouterSettings = field(default_factory=RouterSettings)
    #: A shortcut for ``router.strategy``: when given, it replaces it.
    strategy: Strategy | str | None = None
    #: Bearer tokens clients must present; empty: no client authentication.
    client_tokens: frozenset[str] = frozenset()
    #: The tenant each token belongs to (for instances whose metadata ``tenants`` limits
    #: whom they serve); a token not listed has no tenant.
    tenants: Mapping[str, str] = field(default_factory=dict)
    #: Ask streamed requests upstream for their token counts (``stream_options``); removed
    #: from the client's stream unless it asked too.
    request_usage: bool = True
    #: Sent upstream as ``Authorization: Bearer ...`` (hosted OpenAI-compatible providers).
    upstream_api_key: str | None = None
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S
    per_instance_limit: int = DEFAULT_PER_INSTANCE_LIMIT
    queue_limit: int = DEFAULT_QUEUE_LIMIT
    queue_timeout: float = DEFAULT_QUEUE_TIMEOUT_S
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: Attempts per request: the first plus retries on other instances, only while nothing
    #: has reached the client yet (during a rollout one instance may be draining and another
    #: just gone).
    attempts: int = 3
    load_every: float = 1.0
    #: A private CA for the registry and the upstreams (default: the system's, or
    #: $FLEETWATCH_CA_BUNDLE).
    ca_bundle: str | None = None
    #: How often request counts go to the registry for the service's SLO.
    slo_report_every: float = 10.0
    outliers: OutlierPolicy = field(default_factory=OutlierPolicy)
    #: Continuing streams whose server broke after the first byte (the ``[recovery]`` section).
    recovery: RecoverySettings = field(default_factory=RecoverySettings)

    def __post_init__(self) -> None:
        if self.strategy is not None:
            chosen = strategy_named(self.strategy)
            object.__setattr__(self, "strategy", chosen)
            object.__setattr__(self, "router", replace(self.router, strategy=chosen.value))
        strategy_named(self.router.strategy)
        if self.per_instance_limit < 1:
            raise ValueError(f"per_instance_limit must be >= 1, got {self.per_instance_limit}")
        if self.queue_limit < 0:
            raise ValueError(f"queue_limit must be >= 0, got {self.queue_limit}")
        if not 1 <= self.attempts <= 5:
            raise ValueError(f"attempts must be 1-5, got {self.attempts}")
        for name in ("request_timeout", "queue_timeout", "load_every", "slo_report_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
