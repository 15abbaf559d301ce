"""The deployment record: what a service should run across the fleet, and how to get there.

One deployment per service, with its revision history, as Kubernetes keeps a Deployment and
its ReplicaSets: the spec (profile, version, parameters, replicas, placement), the rollout's
limits (``max_surge``, ``max_unavailable`` as counts or percentages), its deadlines, an
optional canary step, and the last revisions, so ``undo`` can go back to one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from fleetwatch.hosts._model import check_name

#: Revisions a deployment keeps (Kubernetes' ``revisionHistoryLimit`` is 10 too).
DEFAULT_HISTORY = 10
_AMOUNT = re.compile(r"^(\d+)(%?)$")


def resolve_amount(amount: str | int, replicas: int, *, round_up: bool) -> int:
    """A count, or a percentage of ``replicas``: surge rounds up and unavailability down, as
    Kubernetes does (so 25 % of 2 replicas is a surge of 1 and an unavailability of 0)."""
    text = str(amount).strip()
    found = _AMOUNT.match(text)
    if not found:
        raise ValueError(f"{amount!r} is neither a count (2) nor a percentage (25%)")
    value, percent = int(found.group(1)), bool(found.group(2))
    if not percent:
        return value
    share = replicas * value / 100
    return math.ceil(share) if round_up else math.floor(share)


@dataclass(frozen=True, slots=True)
class CanaryStep:
    """Start one new instance, soak it under traffic, compare it with the old version.

    The figures are the gateway's per-version ones (``GET {gateway_url}/v1/gateway/stats``),
    the same gates ``fleetwatch rollout --canary`` has always applied.
    """

    #: The gateway whose traffic the canary takes and whose figures judge it.
    gateway_url: str
    soak_s: float = 30.0
    #: It fails when its error rate exceeds the old version's by more than this...
    max_error_increase: float = 0.01
    #: ...or its p99 latency is more than this many times the old version's.
    max_latency_ratio: float = 1.5

    def __post_init__(self) -> None:
        if not self.gateway_url.startswith(("http://", "https://")):
            raise ValueError(
                f"canary gateway_url {self.gateway_url!r}: give the gateway's http(s):// URL"
            )


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    """What a service should run: one revision of its deployment."""

    service: str
    profile: str
    version: str
    replicas: int
    params: Mapping[str, str] = field(default_factory=dict)
    #: Hosts whose labels include all of these.
    placement: Mapping[str, str] = field(default_factory=dict)
    #: Spread instances so per-host counts differ by at most one where capacity allows.
    spread: bool = True
    max_surge: str = "25%"
    max_unavailable: str = "0"
    #: A new instance not available this long after its start order failed.
    ready_deadline_s: float = 600.0
    #: The rollout fails when it has made no progress this long (progressDeadlineSeconds).
    progress_deadline_s: float = 900.0
    canary: CanaryStep | None = None

    def __post_init__(self) -> None:
        check_name(self.service, "service")
        check_name(self.profile, "profile")
        if self.replicas < 0:
            raise ValueError(f"deployment {self.service!r}: replicas must be 0 or more")
        surge, unavailable = self.surge(), self.unavailable()
        if surge == 0 and unavailable == 0 and self.replicas > 0:
            raise ValueError(
                f"deployment {self.service!r}: max_surge and max_unavailable cannot both be 0 "
                "(the rollout could neither start a new instance nor stop an old one)"
            )

    def surge(self) -> int:
        return resolve_amount(self.max_surge, self.replicas, round_up=True)

    def unavailable(self) -> int:
        return resolve_amount(self.max_unavailable, self.replicas, round_up=False)

    def template(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """What makes an instance of this revision: profile, version, parameters (a new
        revision with the same template needs no instance replaced: a scale, say)."""
        return self.profile, self.version, tuple(sorted(self.params.items()))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["params"] = dict(self.params)
        data["placement"] = dict(self.placement)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeploymentSpec:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        if values.get("canary") is not None:
            values["canary"] = CanaryStep(**values["canary"])
        return cls(**values)


class Phase(StrEnum):
    """Where a deployment's rollout stands."""

    PROGRESSING = "progressing"
    COMPLETE = "complete"
    PAUSED = "paused"
    #: No progress within the progress deadline, or a canary failed its gates.
    FAILED = "failed"
    #: The store cannot be reached: the controller acts on nothing it cannot see.
    FROZEN = "frozen"


@dataclass(frozen=True, slots=True)
class Progress:
    """The controller's last word on a deployment's rollout."""

    revision: int = 0
    phase: Phase = Phase.PROGRESSING
    message: str = ""
    #: Instances of the current revision that are available, of every revision, wanted.
    updated: int = 0
    available: int = 0
    replicas: int = 0
    updated_at: float = 0.0
    #: When the rollout last moved forward (the progress deadline counts from here).
    progressed_at: float = 0.0
    #: When the canary became available (its soak counts from here; 0: not yet).
    canary_since: float = 0.0
    #: The canary's verdict: "" (none yet or no canary), "passed" or "failed".
    canary_verdict: str = ""
    #: The figures it was judged on: {"new": {...}, "old": {...}} from the gateway.
    canary_figures: Mapping[str, Any] | None = None
    #: A standing remark on this revision, kept by every later progress write (why the
    #: controller wrote it, for an automatic undo).
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["phase"] = self.phase.value
        if self.canary_figures is not None:
            data["canary_figures"] = dict(self.canary_figures)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Progress:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        values["phase"] = Phase(values.get("phase", Phase.PROGRESSING))
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Deployment:
    """A service's deployment: its current revision, its history, and its progress."""

    spec: DeploymentSpec
    revision: int
    #: Earlier revisions, newest first, at most the history limit.
    history: tuple[tuple[int, DeploymentSpec], ...] = ()
    paused: bool = False
    progress: Progress = field(default_factory=Progress)
    #: The deployment feed's index at this record's last change.
    index: int = 0

    @property
    def service(self) -> str:
        return self.spec.service

    def revised(self, spec: DeploymentSpec, limit: int = DEFAULT_HISTORY) -> Deployment:
        """The next revision with ``spec``; this one goes into the history."""
        history = ((self.revision, self.spec), *self.history)[:limit]
        return replace(
            self,
            spec=spec,
            revision=self.revision + 1,
            history=history,
            progress=Progress(revision=self.revision + 1, replicas=spec.replicas),
        )

    def spec_at(self, revision: int) -> DeploymentSpec:
        """The spec of one revision, current or kept; raises KeyError naming those kept."""
        if revision == self.revision:
            return self.spec
        for number, spec in self.history:
            if number == revision:
                return spec
        kept = ", ".join(str(n) for n, _ in self.history) or "none"
        raise KeyError(f"revision {revision} of {self.service!r} is not kept (kept: {kept})")

    def with_changes(self, **changes: Any) -> Deployment:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "revision": self.revision,
            "history": [{"revision": n, "spec": s.to_dict()} for n, s in self.history],
            "paused": self.paused,
            "progress": self.progress.to_dict(),
            "index": self.index,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Deployment:
        return cls(
            spec=DeploymentSpec.from_dict(data["spec"]),
            revision=int(data["revision"]),
            history=tuple(
                (int(h["revision"]), DeploymentSpec.from_dict(h["spec"]))
                for h in data.get("history", ())
            ),
            paused=bool(data.get("paused", False)),
            progress=Progress.from_dict(data.get("progress", {})),
            index=int(data.get("index", 0)),
        )
