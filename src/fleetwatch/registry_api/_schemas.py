"""Request and response bodies of the registry API (pydantic lives at the edges)."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from fleetwatch.config._durations import parse_duration
from fleetwatch.registry._model import (
    REGISTRATION_FIELDS,
    CheckSpec,
    CheckType,
    Instance,
    Registration,
)

Seconds = Annotated[float, BeforeValidator(parse_duration)]


def _at_most(high: float) -> Any:
    def check(value: float) -> float:
        if not 0 <= value <= high:
            raise ValueError(f"must be between 0 and {high:g} seconds, got {value:g}")
        return value

    return check


def _bounds(low: float, high: float) -> WithJsonSchema:
    """The published schema: seconds as a number within bounds. (A duration string such as
    ``"500ms"`` is accepted too, as a convenience the schema does not promise.)"""
    return WithJsonSchema({"type": "number", "minimum": low, "maximum": high})


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:=/-]{0,63}$")


#: A URL path without whitespace. ``\s`` alone means two sets: the server's regex engine counts
#: U+0085 as whitespace, a JSON Schema (ECMA) client counts U+FEFF; both are named, so that the
#: published schema and the server accept exactly the same paths.
CHECK_PATH_PATTERN = r"^/[^\s\x85\uFEFF]{0,255}$"


class CheckBody(BaseModel):
    """How the registry should check the instance (all optional)."""

    # agent_port goes with type ttl: said in the schema too, so generated requests know it.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "if": {"properties": {"agent_port": {"type": "integer"}}, "required": ["agent_port"]},
            "then": {"properties": {"type": {"const": "ttl"}}, "required": ["type"]},
        },
    )

    type: CheckType = CheckType.HTTP
    path: Annotated[str, Field(pattern=CHECK_PATH_PATTERN)] = "/health"
    interval: Annotated[Seconds, Field(ge=0.1, le=3600), _bounds(0.1, 3600)] = 1.0
    timeout: Annotated[Seconds, Field(ge=0.05, le=300), _bounds(0.05, 300)] = 0.75
    rise: Annotated[int, Field(ge=1, le=20)] = 2
    fall: Annotated[int, Field(ge=1, le=20)] = 2
    startup_grace: Annotated[
        Seconds | Literal[0],
        AfterValidator(_at_most(3600)),
        _bounds(0, 3600),
    ] = 120.0
    agent_port: Annotated[int | None, Field(ge=1, le=65535)] = None
    agent_path: Annotated[str, Field(pattern=CHECK_PATH_PATTERN)] = "/livez"
    agent_scheme: Literal["http", "https"] = "http"

    @model_validator(mode="after")
    def _agent_with_ttl(self) -> CheckBody:
        if self.agent_port is not None and self.type is not CheckType.TTL:
            raise ValueError("agent_port goes with type 'ttl' (an instance held by its agent)")
        return self

    def spec(self) -> CheckSpec:
        """As the model's CheckSpec."""
        return CheckSpec(
            type=self.type,
            path=self.path,
            interval=self.interval,
            timeout=self.timeout,
            rise=self.rise,
            fall=self.fall,
            startup_grace=float(self.startup_grace),
            agent_port=self.agent_port,
            agent_path=self.agent_path,
            agent_scheme=self.agent_scheme,
        )


class RegistrationBody(BaseModel):
    """``PUT /v1/services/{service}/instances/{instance_id}``. Only host and port are required."""

    model_config = ConfigDict(extra="forbid")

    host: Annotated[
        str,
        Field(
            min_length=1,
            max_length=253,
            json_schema_extra={
                "anyOf": [
                    {"format": "ipv4"},
                    {"format": "ipv6"},
                    {"pattern": _HOSTNAME.pattern},
                ]
            },
        ),
    ]
    port: Annotated[int, Field(ge=1, le=65535)]
    scheme: Literal["http", "https"] = "http"
    check: CheckBody = Field(default_factory=CheckBody)
    # The pattern is published in the schema; the validator below checks it with a message
    # that names the tag.
    tags: Annotated[
        list[Annotated[str, WithJsonSchema({"type": "string", "pattern": _TAG.pattern})]],
        Field(max_length=32),
    ] = Field(default_factory=list)
    metadata: Annotated[
        dict[
            Annotated[str, Field(min_length=1, max_length=64)],
            Annotated[str, Field(max_length=1024)],
        ],
        Field(max_length=64),
    ] = Field(default_factory=dict)
    version: Annotated[str, Field(max_length=64)] = ""
    weight: Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)] = 1.0
    ttl: Annotated[Seconds, Field(ge=1, le=86400), _bounds(1, 86400)] = 30.0

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value.strip("[]")))
        except ValueError:
            pass
        if not _HOSTNAME.match(value):
            raise ValueError(
                "must be an IP address or a DNS name (letters, digits, '-', '.'), without "
                f"scheme, port or path; got {value!r}"
            )
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not _TAG.match(tag):
                raise ValueError(f"tag {tag!r} is invalid: 1-64 of letters, digits and _ . : = / -")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not 1 <= len(key) <= 64 or len(item) > 1024:
                raise ValueError(f"metadata {key!r}: keys are 1-64 characters, values at most 1024")
        return value

    def registration(self) -> Registration:
        """As the registry's Registration."""
        plain = {name: getattr(self, name) for name in REGISTRATION_FIELDS}
        plain.update(check=self.check.spec(), tags=frozenset(self.tags), metadata=self.metadata)
        return Registration(**plain)


class StatusBody(BaseModel):
    """``PUT .../status``: ``draining`` or ``maintenance``, or ``active`` to hand back to checks."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["draining", "maintenance", "active"]


class HeartbeatBody(BaseModel):
    """Optional body of a heartbeat: an agent's own verdict on a TTL-checked instance."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["starting", "available", "degraded", "unavailable"] | None = None
    output: Annotated[str, Field(max_length=1024)] = ""


class LoadBody(BaseModel):
    """Load figures an instance (or its agent) publishes: queue depth, running requests,
    KV-cache use... Numbers only; they never bump the change index."""

    model_config = ConfigDict(extra="forbid")

    load: Annotated[dict[str, Annotated[float, Strict()]], Field(max_length=32)]


class LoadReply(BaseModel):
    """The latest load figures of a service's instances, by instance id."""

    service: str
    load: dict[str, dict[str, float]]


class CheckOut(BaseModel):
    """How the instance is checked."""

    type: str
    path: str
    interval: float
    timeout: float
    rise: int
    fall: int
    startup_grace: float
    agent_port: int | None
    agent_path: str
    agent_scheme: Literal["http", "https"]


class InstanceOut(BaseModel):
    """An instance as the API shows it."""

    service: str
    instance_id: str
    url: str
    host: str
    port: int
    scheme: str
    status: str
    routable: bool
    weight: float
    effective_weight: float
    tags: list[str]
    metadata: dict[str, str]
    version: str
    ttl: float
    check: CheckOut
    registered_at: float
    status_since: float
    last_check_at: float | None
    last_check_output: str
    consecutive_failures: int
    consecutive_successes: int
    owner: str

    @classmethod
    def of(cls, instance: Instance) -> InstanceOut:
        """From the model."""
        data: dict[str, Any] = instance.to_dict()
        data.update(
            url=instance.base_url,
            routable=instance.status.routable,
            effective_weight=instance.effective_weight,
            check=CheckOut.model_construct(**data["check"]),
        )
        # The model was validated on the way in; constructing skips validating it twice.
        return cls.model_construct(**data)


class InstanceReply(BaseModel):
    """One instance and the change index after the request."""

    index: int
    instance: InstanceOut


class InstancesReply(BaseModel):
    """A service's instances (filtered) at a change index."""

    service: str
    index: int
    instances: list[InstanceOut]


class ServicesReply(BaseModel):
    """Every service with its instance count by status."""

    index: int
    services: dict[str, dict[str, int]]


class DiscoverReply(BaseModel):
    """``/discover/{service}``, the one-call discovery read: the healthiest instance and every
    routable one."""

    service: str
    index: int
    instance: InstanceOut | None
    instances: list[InstanceOut]


class EmptyReply(BaseModel):
    """A change that returns no instance."""

    index: int
    removed: bool = False


class ErrorReply(BaseModel):
    """What went wrong, naming the field or rule, and the instance it concerns if any."""

    error: str
    service: str | None = None
    instance_id: str | None = None
