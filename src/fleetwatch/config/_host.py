"""The ``fleetwatch host`` configuration file: who the host is, and what it may launch.

```toml
[host]
id = "gpu-07"
address = "10.0.0.7"                  # where clients and the registry reach its instances
registry = "http://10.0.0.1:8760"
token_env = "FLEETWATCH_HOST_TOKEN"   # a token with the host scope, bound to this id
labels = { gpu = "h100", zone = "a" }
capacity = 4                          # instance slots
state_dir = "/var/lib/fleetwatch/host"
ttl = "10s"                           # the host's lease; it reports every third of it

[[profiles]]
name = "llama"
command = ["llama-server", "-m", "{model}", "-c", "{ctx}",
           "--host", "{address}", "--port", "{port}"]   # {address}, {port}: filled by the host
kind = "llamacpp"
user = "llm"                          # run the server as this user
ready_timeout = "10m"
[profiles.params]
model = { path_under = "/models", suffix = ".gguf" }
ctx = { one_of = ["2048", "4096", "8192"], default = "4096" }
```
"""

from __future__ import annotations

import pwd
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from fleetwatch.config._durations import parse_duration
from fleetwatch.config._validation import Where, read_toml, validate
from fleetwatch.errors import ConfigError
from fleetwatch.hosts._profiles import BUILTIN_PARAMS, LaunchProfile, ParamRule
from fleetwatch.registry._model import NAME_PATTERN

Duration = Annotated[float, BeforeValidator(parse_duration)]


class ParamSection(BaseModel):
    """One ``[profiles.params]`` entry: exactly one rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path_under: str | None = None
    suffix: str = ""
    one_of: list[str] = Field(default_factory=list)
    min: int | None = None
    max: int | None = None
    default: str | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> ParamSection:
        integer = self.min is not None or self.max is not None
        if sum([self.path_under is not None, bool(self.one_of), integer]) != 1:
            raise ValueError("give exactly one rule: path_under, one_of, or min and max")
        if integer and (self.min is None or self.max is None):
            raise ValueError("an integer parameter gives both min and max")
        if self.path_under is not None and not Path(self.path_under).is_absolute():
            raise ValueError(f"path_under must be an absolute folder, got {self.path_under!r}")
        return self

    def as_rule(self, name: str) -> ParamRule:
        integer = (self.min, self.max) if self.min is not None and self.max is not None else None
        return ParamRule(
            name=name,
            path_under=self.path_under,
            suffix=self.suffix,
            one_of=tuple(self.one_of),
            integer=integer,
            default=self.default,
        )


class ProfileSection(BaseModel):
    """One ``[[profiles]]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    command: Annotated[list[str], Field(min_length=1)]
    kind: str = "openai"
    params: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], ParamSection] = Field(
        default_factory=dict
    )
    user: str | None = None
    model: str | None = None
    agent_args: list[str] = Field(default_factory=list)
    ready_timeout: Duration = 600.0

    @field_validator("user")
    @classmethod
    def _user_exists(cls, user: str | None) -> str | None:
        if user is not None:
            try:
                pwd.getpwnam(user)
            except KeyError:
                raise ValueError(f"no user {user!r} on this machine") from None
        return user

    @field_validator("params")
    @classmethod
    def _port_is_the_agents(cls, params: dict[str, ParamSection]) -> dict[str, ParamSection]:
        taken = sorted(set(params) & BUILTIN_PARAMS)
        if taken:
            raise ValueError(f"{', '.join(taken)}: filled by the host, not given by an order")
        return params

    def as_profile(self) -> LaunchProfile:
        try:
            return LaunchProfile(
                name=self.name,
                command=tuple(self.command),
                kind=self.kind,
                params={n: p.as_rule(n) for n, p in self.params.items()},
                user=self.user,
                model=self.model,
                agent_args=tuple(self.agent_args),
                ready_timeout=self.ready_timeout,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


class HostSection(BaseModel):
    """``[host]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=NAME_PATTERN)]
    address: Annotated[str, Field(min_length=1)]
    registry: str | None = None
    token_env: str = "FLEETWATCH_TOKEN"  # noqa: S105 - a variable's name, not a secret
    labels: dict[str, str] = Field(default_factory=dict)
    capacity: Annotated[int, Field(ge=0)] = 1
    state_dir: str = "/var/lib/fleetwatch/host"
    ttl: Duration = 10.0


class HostConfig(BaseModel):
    """The whole ``host.toml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: HostSection
    profiles: list[ProfileSection] = Field(default_factory=list)

    @field_validator("profiles")
    @classmethod
    def _distinct(cls, profiles: list[ProfileSection]) -> list[ProfileSection]:
        names = [p.name for p in profiles]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"profile names must be distinct: {', '.join(twice)} repeated")
        return profiles

    def launch_profiles(self) -> dict[str, LaunchProfile]:
        return {p.name: p.as_profile() for p in self.profiles}


def load_host_config(path: str | Path) -> HostConfig:
    """Read and validate a host configuration file."""
    source = str(path)
    raw = read_toml(path)
    config = validate(HostConfig, raw, Where(source, {}))
    try:
        config.launch_profiles()
    except ConfigError as exc:
        raise ConfigError(str(exc), source=source) from None
    return config
