"""Registered instances, their status machine, and the change events the registry emits."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

#: Service names and instance ids appear in URLs and Redis keys: short and URL-safe.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)

#: A degraded instance keeps serving at this share of its weight, like Consul's warning weight
#: (``Weights.Warning`` 1 against ``Passing`` 10).
DEGRADED_WEIGHT_FACTOR = 0.1


class InstanceStatus(StrEnum):
    """Where an instance stands.

    ``starting`` -> ``available`` after ``rise`` passing checks; ``available`` <->
    ``unavailable`` after ``fall`` failures; ``degraded`` stays routable at a tenth of its
    weight; ``maintenance`` is set by an operator (not routable, never evicted); ``draining``
    takes no new traffic while in-flight requests finish, then the instance deregisters.
    """

    STARTING = "starting"
    AVAILABLE = "available"
    DEGRADED = "degraded"
    UNAVAILABLE = "unavailable"
    MAINTENANCE = "maintenance"
    DRAINING = "draining"

    @property
    def routable(self) -> bool:
        """Whether new requests may be sent here (one of :data:`ROUTABLE_STATUSES`)."""
        return self in ROUTABLE_STATUSES

    @property
    def held_by_operator(self) -> bool:
        """Set by an operator; checks do not move the instance out of it."""
        return self in OPERATOR_STATUSES


#: The statuses new requests may go to: the ones passing checks lead to.
ROUTABLE_STATUSES = frozenset({InstanceStatus.AVAILABLE, InstanceStatus.DEGRADED})
#: Set by an operator (maintenance, draining): checks do not move an instance out of them.
OPERATOR_STATUSES = frozenset({InstanceStatus.MAINTENANCE, InstanceStatus.DRAINING})
#: The statuses checks move an instance between: every one an operator does not hold.
CHECKED_STATUSES = frozenset(InstanceStatus) - OPERATOR_STATUSES


class CheckType(StrEnum):
    """How the registry judges an instance."""

    HTTP = "http"
    TCP = "tcp"
    LLM = "llm"
    #: Judged by an agent's reports and its lease; the monitor does not probe it.
    TTL = "ttl"


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """How the monitor checks an instance.

    Defaults aim at noticing a hung instance within about 3 s (Kubernetes' readiness defaults
    take 30 s): a check every second, a 0.75 s timeout, two failures to fall, two successes to
    rise. A crash is noticed faster than that, through the monitor's idle keep-alive connection.
    ``startup_grace`` keeps a slow-loading server (vLLM binds its port before its model is
    loaded) in ``starting`` rather than ``unavailable``.
    """

    type: CheckType = CheckType.HTTP
    path: str = "/health"
    interval: float = 1.0
    timeout: float = 0.75
    rise: int = 2
    fall: int = 2
    startup_grace: float = 120.0
    #: With a ``ttl`` check: the agent's own port on the instance's host. The monitor then
    #: checks only that the agent is reachable (GET ``agent_path``), never the server itself.
    agent_port: int | None = None
    agent_path: str = "/livez"
    #: ``https`` when the agent serves its probe endpoints over TLS.
    agent_scheme: str = "http"

    def __post_init__(self) -> None:
        for name in ("interval", "timeout"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"check.{name} must be a finite number > 0, got {value}")
        if not (self.startup_grace >= 0 and math.isfinite(self.startup_grace)):
            raise ValueError(
                f"check.startup_grace must be finite and >= 0, got {self.startup_grace}"
            )
        for name in ("rise", "fall"):
            if getattr(self, name) < 1:
                raise ValueError(f"check.{name} must be >= 1, got {getattr(self, name)}")
        if not self.path.startswith("/"):
            raise ValueError(f"check.path must start with '/', got {self.path!r}")
        if self.agent_port is not None and self.type is not CheckType.TTL:
            raise ValueError("check.agent_port goes with a ttl check (an agent-held instance)")
        if self.agent_scheme not in ("http", "https"):
            raise ValueError(f"check.agent_scheme must be http or https, got {self.agent_scheme!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary, written out field by field (this is on the hot path of
        every discovery answer, where ``dataclasses.asdict`` was the largest cost)."""
        return {
            "type": self.type.value,
            "path": self.path,
            "interval": self.interval,
            "timeout": self.timeout,
            "rise": self.rise,
            "fall": self.fall,
            "startup_grace": self.startup_grace,
            "agent_port": self.agent_port,
            "agent_path": self.agent_path,
            "agent_scheme": self.agent_scheme,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> CheckSpec:
        """The inverse of :meth:`to_dict`; unknown keys are ignored (mixed-version nodes)."""
        values = {k: v for k, v in (data or {}).items() if k in _CHECK_FIELDS}
        if "type" in values:
            values["type"] = CheckType(values["type"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Instance:
    """One registered instance of a service, with what the registry knows about its health."""

    service: str
    instance_id: str
    host: str
    port: int
    scheme: str = "http"
    check: CheckSpec = field(default_factory=CheckSpec)
    tags: frozenset[str] = frozenset()
    metadata: Mapping[str, str] = field(default_factory=dict)
    version: str = ""
    weight: float = 1.0
    ttl: float = 30.0
    status: InstanceStatus = InstanceStatus.STARTING
    registered_at: float = 0.0
    status_since: float = 0.0
    last_check_at: float | None = None
    last_check_output: str = ""
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    owner: str = ""
    #: (service, instance_id) and ``scheme://host:port`` (IPv6 hosts in brackets), worked out
    #: once: the gateway asks for them many times per request.
    key: tuple[str, str] = field(init=False, repr=False, compare=False)
    base_url: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        host = f"[{self.host}]" if ":" in self.host else self.host
        object.__setattr__(self, "key", (self.service, self.instance_id))
        object.__setattr__(self, "base_url", f"{self.scheme}://{host}:{self.port}")
        for label, value in (("service", self.service), ("instance_id", self.instance_id)):
            if not _NAME.match(value):
                raise ValueError(
                    f"{label} {value!r} is invalid: use 1-63 letters, digits, '_', '.' or '-', "
                    "starting with a letter or digit"
                )
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be 1-65535, got {self.port}")
        if self.scheme not in ("http", "https"):
            raise ValueError(f"scheme must be http or https, got {self.scheme!r}")
        if not (self.weight >= 0 and math.isfinite(self.weight)):
            raise ValueError(f"weight must be a finite number >= 0, got {self.weight}")
        if not (self.ttl > 0 and math.isfinite(self.ttl)):
            raise ValueError(f"ttl must be a finite number > 0, got {self.ttl}")

    @property
    def effective_weight(self) -> float:
        """The weight a balancer should use: full when available, a tenth when degraded."""
        if self.status is InstanceStatus.AVAILABLE:
            return self.weight
        if self.status is InstanceStatus.DEGRADED:
            return self.weight * DEGRADED_WEIGHT_FACTOR
        return 0.0

    def with_changes(self, **changes: Any) -> Instance:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (the store and API format).

        Written out field by field: ``dataclasses.asdict`` deep-copies recursively and was the
        largest cost of answering a discovery request.
        """
        return {
            "service": self.service,
            "instance_id": self.instance_id,
            "host": self.host,
            "port": self.port,
            "scheme": self.scheme,
            "check": self.check.to_dict(),
            "tags": sorted(self.tags),
            "metadata": dict(self.metadata),
            "version": self.version,
            "weight": self.weight,
            "ttl": self.ttl,
            "status": self.status.value,
            "registered_at": self.registered_at,
            "status_since": self.status_since,
            "last_check_at": self.last_check_at,
            "last_check_output": self.last_check_output,
            "consecutive_failures": self.consecutive_failures,
            "consecutive_successes": self.consecutive_successes,
            "owner": self.owner,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Instance:
        """The inverse of :meth:`to_dict`. Unknown keys are ignored, so nodes of different
        versions can share one store during a rolling upgrade."""
        values = {k: v for k, v in data.items() if k in _INSTANCE_FIELDS}
        values["check"] = CheckSpec.from_dict(values.pop("check", None))
        values["tags"] = frozenset(values.get("tags") or ())
        values["metadata"] = dict(values.get("metadata") or {})
        values["status"] = InstanceStatus(values.get("status", InstanceStatus.STARTING))
        return cls(**values)


_INSTANCE_FIELDS = frozenset(f.name for f in fields(Instance) if f.init)
_CHECK_FIELDS = frozenset(f.name for f in fields(CheckSpec))


@dataclass(frozen=True, slots=True)
class Registration:
    """What a registrant says about its instance: the one shape of a registration.

    The client sends it (:meth:`as_body`), the agent and ``registration()`` build it, the API
    parses its body into it, and the registry stores an :class:`Instance` from it. Everything
    else about an instance (status, owner, check results) is the registry's to know.
    """

    host: str
    port: int
    scheme: str = "http"
    check: CheckSpec = field(default_factory=CheckSpec)
    tags: frozenset[str] = frozenset()
    metadata: Mapping[str, str] = field(default_factory=dict)
    version: str = ""
    weight: float = 1.0
    ttl: float = 30.0

    def as_body(self) -> dict[str, Any]:
        """The JSON body of ``PUT /v1/services/{service}/instances/{instance_id}``."""
        return {
            "host": self.host,
            "port": self.port,
            "scheme": self.scheme,
            "check": self.check.to_dict(),
            "tags": sorted(self.tags),
            "metadata": dict(self.metadata),
            "version": self.version,
            "weight": self.weight,
            "ttl": self.ttl,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Registration:
        """A registration from a PUT body's fields (as :meth:`as_body` writes them)."""
        values = {
            k: v for k, v in body.items() if k in REGISTRATION_FIELDS and k not in _COLLECTIONS
        }
        return cls(
            **values,
            check=CheckSpec.from_dict(body.get("check")),
            tags=frozenset(body.get("tags") or ()),
            metadata=dict(body.get("metadata") or {}),
        )

    @classmethod
    def of(cls, instance: Instance) -> Registration:
        """What registering ``instance`` again, as it is, would say."""
        return cls(**{name: getattr(instance, name) for name in REGISTRATION_FIELDS})


#: The fields of a registration, in order: what the API's body and the client's carry.
REGISTRATION_FIELDS = tuple(f.name for f in fields(Registration))
_COLLECTIONS = frozenset({"check", "tags", "metadata"})


class EventType(StrEnum):
    """What happened to an instance (or, for the notices, to the registry itself)."""

    REGISTERED = "registered"
    UPDATED = "updated"
    STATUS_CHANGED = "status_changed"
    DEREGISTERED = "deregistered"
    EVICTED = "evicted"
    SELF_PRESERVATION_ENGAGED = "self_preservation_engaged"
    SELF_PRESERVATION_RELEASED = "self_preservation_released"


#: Registry-wide notices (self-preservation) carry this in place of service and instance.
NOTICE_KEY = ("*", "registry")


@dataclass(frozen=True, slots=True)
class Event:
    """One membership or status change, numbered by the registry's change index."""

    index: int
    type: EventType
    service: str
    instance_id: str
    at: float
    instance: Instance | None = None
    previous_status: InstanceStatus | None = None
    reason: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """(service, instance_id)."""
        return self.service, self.instance_id

    @property
    def is_notice(self) -> bool:
        """A registry-wide notice rather than a change to one instance."""
        return self.key == NOTICE_KEY

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "index": self.index,
            "type": self.type.value,
            "service": self.service,
            "instance_id": self.instance_id,
            "at": self.at,
            "instance": self.instance.to_dict() if self.instance else None,
            "previous_status": self.previous_status.value if self.previous_status else None,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """The inverse of :meth:`to_dict`."""
        instance = data.get("instance")
        previous = data.get("previous_status")
        return cls(
            index=int(data["index"]),
            type=EventType(data["type"]),
            service=str(data["service"]),
            instance_id=str(data["instance_id"]),
            at=float(data["at"]),
            instance=Instance.from_dict(instance) if instance else None,
            previous_status=InstanceStatus(previous) if previous else None,
            reason=str(data.get("reason", "")),
        )
