"""The ``fleetwatch serve`` configuration file: store, tokens, limits, monitor settings.

```toml
[registry]
store = "redis://127.0.0.1:6379/0"   # or "memory" (the default)
namespace = "fleetwatch"
open_reads = false                    # true: reads need no token
tombstone = "5m"
max_body_bytes = 65536
header_timeout = "10s"                # slowloris: headers must arrive within this
read_timeout = "60s"                  # the whole request, body included
max_connections = 4096                # connections plus requests before 503
allowed_networks = ["127.0.0.0/8", "10.0.0.0/8"]   # default: loopback and private ranges

[monitor]
deregister_after = "10m"
self_preservation_share = 0.5
self_preservation_minimum = 5
ca_bundle = "/etc/fleetwatch/ca.pem"  # verify https instances and agents against this CA

[[tokens]]
name = "team-a"
token_env = "TEAM_A_TOKEN"            # the secret lives in the environment, never here
scopes = ["register", "read"]         # also "deploy" (orders to hosts) and "admin"

[[tokens]]
name = "host-gpu-07"
token_env = "HOST_GPU_07_TOKEN"
scopes = ["host", "register", "read"] # a host token is bound to one host
host = "gpu-07"

[[slos]]
service = "llm"
objective = 0.999                     # share of time with >= min_available available
window = "30d"
min_available = 1
desired = 3                           # capacity SLI: available / desired
capacity_objective = 0.9
request_objective = 0.99              # share of gateway requests that succeed
latency_objective = 0.95              # share whose first token comes within the threshold
latency_threshold = "2s"
```
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from fleetwatch.config._alerts import AlertSection, NotifierSection
from fleetwatch.config._durations import parse_duration
from fleetwatch.config._validation import Where, read_toml, validate
from fleetwatch.errors import ConfigError
from fleetwatch.registry._model import NAME_PATTERN
from fleetwatch.security._auth import Token
from fleetwatch.security._networks import NetworkPolicy
from fleetwatch.slo._objective import SloObjective

Duration = Annotated[float, BeforeValidator(parse_duration)]
#: Names fleetwatch gives callers itself: no configured token may take them.
RESERVED_NAMES = frozenset({"anonymous", "default", "static"})


class RegistrySection(BaseModel):
    """``[registry]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str = "memory"
    namespace: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")] = "fleetwatch"
    open_reads: bool = False
    tombstone: Duration = 300.0
    max_body_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024
    #: Slow clients: request headers must arrive within this, the whole request within
    #: read_timeout; more than max_connections connections plus requests get 503.
    header_timeout: Annotated[Duration, Field(gt=0, le=300)] = 10.0
    read_timeout: Annotated[Duration, Field(gt=0, le=3600)] = 60.0
    max_connections: Annotated[int, Field(ge=16, le=1_000_000)] = 4096
    #: The SSRF guard: the only networks instances may be in (default: loopback + private).
    allowed_networks: list[str] | None = None

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            NetworkPolicy(value)  # raises naming the bad entry
        return value


class MonitorSection(BaseModel):
    """``[monitor]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deregister_after: Duration = 600.0
    self_preservation_share: Annotated[float, Field(gt=0, lt=1)] = 0.5
    self_preservation_minimum: Annotated[int, Field(ge=1)] = 5
    #: CA bundle the monitor verifies https instances and agents against.
    ca_bundle: str | None = None


class TokenSection(BaseModel):
    """One ``[[tokens]]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    token_env: Annotated[str, Field(min_length=1)]
    scopes: list[Literal["read", "register", "deploy", "host", "admin"]]
    #: With the ``host`` scope: the one host this token acts as.
    host: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None

    @model_validator(mode="after")
    def _host_scope_is_bound(self) -> TokenSection:
        if ("host" in self.scopes) != (self.host is not None):
            raise ValueError(
                "a token with the 'host' scope names its host (host = \"ID\"), and only such a "
                "token does"
            )
        if "host" in self.scopes and {"deploy", "admin"} & set(self.scopes):
            raise ValueError("a host token cannot also have the 'deploy' or 'admin' scope")
        return self


class SloSection(BaseModel):
    """``[[slos]]``: a service's availability and capacity objectives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]
    #: Share of time with at least ``min_available`` available instances, e.g. 0.999.
    objective: Annotated[float, Field(gt=0, lt=1)] = 0.999
    window: Duration = 30 * 86400.0
    min_available: Annotated[int, Field(ge=1)] = 1
    #: Capacity SLI: available over desired instances (one of ten up is not "available").
    desired: Annotated[int, Field(ge=1)] | None = None
    capacity_objective: Annotated[float, Field(gt=0, lt=1)] | None = None
    #: Request SLIs, from what gateways report: share of requests that succeeded...
    request_objective: Annotated[float, Field(gt=0, lt=1)] | None = None
    #: ...and share whose first byte (first token) came within ``latency_threshold``.
    latency_objective: Annotated[float, Field(gt=0, lt=1)] | None = None
    latency_threshold: Duration = 2.0

    @field_validator("window")
    @classmethod
    def _window(cls, value: float) -> float:
        if value < 3600:
            raise ValueError(f"must be at least 1h (burn rates look back up to 6h), got {value:g}s")
        return value

    def as_objective(self) -> SloObjective:
        """As the SLO tracker takes it."""
        return SloObjective(**self.model_dump())


class ServeConfig(BaseModel):
    """A whole ``fleetwatch serve`` configuration file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    registry: RegistrySection = Field(default_factory=RegistrySection)
    monitor: MonitorSection = Field(default_factory=MonitorSection)
    tokens: list[TokenSection] = Field(default_factory=list)
    slos: list[SloSection] = Field(default_factory=list)
    alerts: list[AlertSection] = Field(default_factory=list)
    notifiers: list[NotifierSection] = Field(default_factory=list)

    @model_validator(mode="after")
    def _alerts_name_known_things(self) -> ServeConfig:
        notifiers = {n.name for n in self.notifiers}
        objectives = {s.service for s in self.slos}
        for alert in self.alerts:
            unknown = sorted(set(alert.notify or ()) - notifiers)
            if unknown:
                raise ValueError(
                    f"alert {alert.name!r} notifies {', '.join(unknown)}, which no "
                    f"[[notifiers]] defines (defined: {', '.join(sorted(notifiers)) or 'none'})"
                )
            if alert.kind == "slo_burn" and alert.service not in objectives:
                raise ValueError(
                    f"alert {alert.name!r} watches the SLO of {alert.service!r}, which no "
                    "[[slos]] defines"
                )
        names = [a.name for a in self.alerts]
        if len(names) != len(set(names)):
            raise ValueError("alert names must be unique")
        return self

    @field_validator("tokens")
    @classmethod
    def _distinct_names(cls, tokens: list[TokenSection]) -> list[TokenSection]:
        # Instances belong to a token's name: two tokens with one name would share them.
        seen: set[str] = set()
        for token in tokens:
            if token.name in seen or token.name in RESERVED_NAMES:
                raise ValueError(
                    f"token name {token.name!r} is used twice or reserved "
                    f"({', '.join(sorted(RESERVED_NAMES))} are reserved); names must be unique"
                )
            seen.add(token.name)
        return tokens

    def secrets(self, environ: Mapping[str, str] | None = None) -> list[Token]:
        """Every configured token, its secret read from the environment."""
        env = os.environ if environ is None else environ
        found: list[Token] = []
        for token in self.tokens:
            secret = env.get(token.token_env)
            if not secret:
                raise ConfigError(
                    f"token {token.name!r}: environment variable {token.token_env} is not set"
                )
            found.append(Token(token.name, secret, frozenset(token.scopes), host_id=token.host))
        return found


def load_serve_config(path: str | Path | None) -> ServeConfig:
    """Read and validate a serve configuration file (``None``: every default)."""
    if path is None:
        return ServeConfig()
    source = str(path)
    raw = read_toml(path)
    return validate(ServeConfig, raw, Where(source, {}))
