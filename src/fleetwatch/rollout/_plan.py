"""What a rollout on this machine is told, and how it fails."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from fleetwatch.errors import FleetwatchError


class RolloutFailed(FleetwatchError):
    """The rollout stopped; the service keeps serving on what is left."""


def default_host_id() -> str:
    """``local-<hostname>``, as a valid name: this machine, as the one host of its rollouts."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()) or "machine"
    return f"local-{name}"[:63].rstrip("-.")


@dataclass(frozen=True, slots=True)
class RolloutSettings:
    """One rollout of ``service`` on this machine: to ``version``, launched from ``launch``,
    or (``undo``) back to an earlier revision of its deployment."""

    service: str
    launch: str | None = None
    version: str | None = None
    registry_url: str | None = None
    token: str | None = None
    kind: str = "openai"
    model: str | None = None
    #: Instances wanted (default: the deployment's, else as many as the service has now).
    replicas: int | None = None
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
    #: The agents' logs, and this machine's host state (its instances, its launch commands).
    log_dir: Path = field(default_factory=lambda: Path.cwd() / "fleetwatch-rollout-logs")
    agent_args: tuple[str, ...] = ()
    #: Go back to an earlier revision instead (``to_revision``: default, the previous one).
    undo: bool = False
    to_revision: int | None = None
    #: This machine as a host of the fleet.
    host_id: str = field(default_factory=default_host_id)

    def __post_init__(self) -> None:
        if self.undo:
            if self.launch or self.version:
                raise ValueError("--undo takes no --launch or --version: the revision has them")
        elif not self.launch or not self.version:
            raise ValueError("--launch and --version are required (or --undo)")
        if self.launch is not None and "{port}" not in self.launch:
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
        if self.replicas is not None and self.replicas < 0:
            raise ValueError("--replicas must be >= 0")
