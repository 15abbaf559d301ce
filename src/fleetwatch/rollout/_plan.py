"""What a rollout is told, and how it fails."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fleetwatch.errors import FleetwatchError

#: Metadata keys the rollout records on each new instance (``--undo`` reads them back).
META_TEMPLATE = "launch_template"
META_PREVIOUS_VERSION = "previous_version"
META_PREVIOUS_TEMPLATE = "previous_launch_template"


class RolloutFailed(FleetwatchError):
    """The rollout stopped; the service keeps serving on what is left."""


@dataclass(frozen=True, slots=True)
class RolloutSettings:
    """One rollout of ``service`` to ``version``, launched from ``launch``."""

    service: str
    launch: str
    version: str
    registry_url: str | None = None
    token: str | None = None
    kind: str = "openai"
    model: str | None = None
    max_surge: int = 1
    max_unavailable: int = 0
    ready_timeout: float = 120.0
    #: How long to wait for a drained instance to leave the registry.
    drain_wait: float = 60.0
    canary: bool = False
    canary_soak: float = 30.0
    gateway_url: str | None = None
    #: The canary fails when its error rate exceeds the old version's by this much...
    canary_max_error_increase: float = 0.01
    #: ...or its p99 latency exceeds the old version's by this factor.
    canary_max_latency_ratio: float = 1.5
    log_dir: Path = field(default_factory=lambda: Path.cwd() / "fleetwatch-rollout-logs")
    agent_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if "{port}" not in self.launch:
            raise ValueError(
                f"--launch must contain {{port}} (where the new server listens), "
                f"got {self.launch!r}"
            )
        if self.max_surge < 0 or self.max_unavailable < 0:
            raise ValueError("--max-surge and --max-unavailable must be >= 0")
        if self.max_surge == 0 and self.max_unavailable == 0:
            raise ValueError(
                "--max-surge and --max-unavailable cannot both be 0: nothing could move"
            )
        if self.canary and not self.gateway_url:
            raise ValueError("--canary compares the gateway's figures: give --gateway URL")
        if not self.version:
            raise ValueError("--version is required (it tells new instances from old ones)")

    @property
    def batch(self) -> int:
        """Instances replaced per step."""
        return max(self.max_surge, self.max_unavailable)
