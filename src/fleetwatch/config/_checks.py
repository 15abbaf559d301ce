"""The ``[[checks]]`` tables: one pydantic model per check type, each able to build its check."""

from __future__ import annotations

import os
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from fleetwatch.config._durations import parse_duration
from fleetwatch.health import DEPENDENCY_GROUPS, CheckSettings, Group, HealthCheck
from fleetwatch.health._check import CHECK_NAME_PATTERN
from fleetwatch.health.checks import (
    HttpCheck,
    LlmCheck,
    PostgresCheck,
    RedisCheck,
    SystemCheck,
    TcpCheck,
    parse_status_spec,
)
from fleetwatch.health.checks import _gpu as gpu_check
from fleetwatch.health.checks import _llm as llm_check
from fleetwatch.health.checks import _postgres as postgres_check
from fleetwatch.health.checks import _redis as redis_check
from fleetwatch.health.checks import _system as system_check

Duration = Annotated[float, BeforeValidator(parse_duration)]
Name = Annotated[str, Field(pattern=CHECK_NAME_PATTERN)]
Percent = Annotated[float, Field(gt=0, le=100)]
Ratio = Annotated[float, Field(gt=0, le=1)]


def _require_env(variable: str, field: str) -> str:
    """Read a secret from the environment; secrets never live in the config file."""
    value = os.environ.get(variable)
    if value is None:
        raise ValueError(f"{field}: environment variable {variable} is not set")
    return value


def _env_secret(variable: str | None, field: str) -> str | None:
    """Like :func:`_require_env`, for optional secrets."""
    return None if variable is None else _require_env(variable, field)


#: Headers that carry credentials; their values must come from the environment.
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"}
)


def _require_scheme(url: str, schemes: tuple[str, ...], secret_field: str | None = None) -> str:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        allowed = " or ".join(f"{s}://" for s in schemes)
        raise ValueError(f"must be a URL starting with {allowed} and naming a host, got {url!r}")
    if parts.password is not None:
        where = (
            f"; put it in an environment variable named by `{secret_field}`" if secret_field else ""
        )
        raise ValueError(f"must not contain a password (secrets never live in the file){where}")
    return url


class CheckConfig(BaseModel):
    """Fields every check has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_interval: ClassVar[float] = 10.0

    name: Name
    type: str
    critical: bool = False
    weight: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1.0
    groups: list[Group] = Field(default_factory=lambda: sorted(DEPENDENCY_GROUPS))
    interval: Duration | None = None
    timeout: Duration = 5.0
    rise: Annotated[int, Field(ge=1, le=100)] = 2
    fall: Annotated[int, Field(ge=1, le=100)] = 3

    def settings(self) -> CheckSettings:
        """Scheduling and weighing settings for the health library."""
        return CheckSettings(
            name=self.name,
            interval=self.interval or self.default_interval,
            timeout=self.timeout,
            critical=self.critical,
            weight=self.weight,
            groups=frozenset(self.groups),
            rise=self.rise,
            fall=self.fall,
        )

    def build(self, http: httpx.AsyncClient) -> HealthCheck:
        """The check this table describes."""
        raise NotImplementedError


class HttpCheckConfig(CheckConfig):
    """``type = "http"``: GET ``url``."""

    type: Literal["http"]
    url: str
    expected_status: list[int | str] = Field(default_factory=lambda: list[int | str](["2xx"]))
    headers: dict[str, str] = Field(default_factory=dict)
    headers_from_env: dict[str, str] = Field(default_factory=dict)
    body_contains: str | None = None
    slow_after: Duration | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _require_scheme(value, ("http", "https"), "headers_from_env")

    @field_validator("headers")
    @classmethod
    def _no_secret_headers(cls, value: dict[str, str]) -> dict[str, str]:
        secret = sorted(h for h in value if h.lower() in SECRET_HEADERS)
        if secret:
            raise ValueError(
                f"{', '.join(secret)} carries a secret, and secrets never live in the file: "
                f'use headers_from_env = {{ {secret[0]} = "ENV_VAR_NAME" }}'
            )
        return value

    @field_validator("expected_status", mode="before")
    @classmethod
    def _statuses(cls, value: Any) -> Any:
        values = value if isinstance(value, list) else [value]
        for item in values:
            parse_status_spec(item)
        return values

    def build(self, http: httpx.AsyncClient) -> HealthCheck:
        headers = dict(self.headers)
        for header, variable in self.headers_from_env.items():
            headers[header] = _require_env(variable, f"headers_from_env.{header}")
        return HttpCheck(
            self.url,
            client=http,
            timeout=self.timeout,
            expected_status=[parse_status_spec(s) for s in self.expected_status],
            headers=headers,
            body_contains=self.body_contains,
            slow_after=self.slow_after,
        )


class TcpCheckConfig(CheckConfig):
    """``type = "tcp"``: connect to ``host:port``."""

    type: Literal["tcp"]
    host: Annotated[str, Field(min_length=1, max_length=253)]
    port: Annotated[int, Field(ge=1, le=65535)]
    slow_after: Duration | None = None

    def build(self, http: httpx.AsyncClient) -> HealthCheck:
        return TcpCheck(self.host, self.port, timeout=self.timeout, slow_after=self.slow_after)


class RedisCheckConfig(CheckConfig):
    """``type = "redis"``: PING, write/read/delete, memory and latency."""

    type: Literal["redis"]
    url: str
    password_env: str | None = None
    slow_after: Duration | None = redis_check.DEFAULT_SLOW_AFTER
    memory_ratio: Ratio = redis_check.DEFAULT_MEMORY_RATIO

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _require_scheme(value, ("redis", "rediss"), "password_env")

    def build(self, http: httpx.AsyncClient) -> HealthCheck:
        return RedisCheck(
            self.url,
            timeout=self.timeout,
            password=_env_secret(self.password_env, "password_env"),
            slow_after=self.slow_after,
            memory_ratio=self.memory_ratio,
        )


class PostgresCheckConfig(CheckConfig):
    """``type = "postgres"``: ``SELECT 1`` (or ``query``) and connection use."""

    type: Literal["postgres"]
    dsn: str
    password_env: str | None = None
    query: Annotated[str, Field(min_length=1)] = "SELECT 1"
    slow_after: Duration | None = postgres_check.DEFAULT_SLOW_AFTER
    connections_ratio: Ratio = postgres_check.DEFAULT_CONNECTIONS_RATIO

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: str) -> str:
        return _require_scheme(value, ("postgresql", "postgres"), "password_env")

    def build(self, http: httpx.AsyncClient) -> HealthCheck:
        return PostgresCheck(
            self.dsn,
            timeout=self.timeout,
            query=self.query,
            password=_env_secret(self.password_env, "password_env"),
            slow_after=self.slow_after,
            connections_ratio=self.connections_ratio,
        )


class SystemCheckConfig(CheckConfig):
    """``type = "system"``: CPU, memory and disk of ``path`` against thresholds (percent)."""

    type: Literal["system"]
    path: str = "/"
    cpu_threshold: Percent = system_check.DEFAULT_CPU_THRESHOLD
    memory_threshold: Percent = system_check.DEFAULT_MEMORY_THRESHOLD
    disk_threshold: Percent = system_check.DEFAULT_DISK_THRESHOLD

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not os.path.isabs(value):
            raise ValueError(f"must be an absolute path, got {value!r}")
        return value

    def build(self, http: httpx.AsyncClient) -> HealthCheck:
        return SystemCheck(
            path=self.path,
            cpu_threshold=self.cpu_threshold,
            memory_threshold=self.memory_threshold,
            disk_threshold=self.disk_threshold,
        )


class LlmCheckConfig(CheckConfig):
    """``type = "llm"``: an OpenAI-compatible server at ``url``."""

    #: Each probe generation spends tokens; every 30 s keeps that under 3,000 calls a day.
    default_interval: ClassVar[float] = 30.0

    type: Literal["llm"]
    url: str
    model: str | None = None
    prompt: str | None = None
    max_tokens: Annotated[int, Field(ge=1, le=llm_check.MAX_TOKENS_CAP)] = (
        llm_check.DEFAULT_MAX_TOKENS
    )
    api_key_env: str | None = None
    slow_after: Duration | None = llm_check.DEFAULT_SLOW_AFTER

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _require_scheme(value, ("http", "https"), "api_key_env")

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty; leave it out to only list models")
        return value

    @model_validator(mode="after")
    def _prompt_needs_model(self) -> LlmCheckConfig:
        if self.prompt is not None and self.model is None:
            raise ValueError("prompt: a generation probe needs `model` too")
        return self

    def build(self, http: httpx.AsyncClient) -> HealthCheck:
        return LlmCheck(
            self.url,
            client=http,
            timeout=self.timeout,
            model=self.model,
            prompt=self.prompt,
            max_tokens=self.max_tokens,
            api_key=_env_secret(self.api_key_env, "api_key_env"),
            slow_after=self.slow_after,
        )


class GpuCheckConfig(CheckConfig):
    """``type = "gpu"``: NVIDIA GPUs through NVML (``unknown`` where there is no NVML)."""

    type: Literal["gpu"]
    indices: list[Annotated[int, Field(ge=0)]] | None = None
    memory_warn: Ratio = gpu_check.DEFAULT_MEMORY_WARN
    temperature_warn_c: Annotated[float, Field(gt=0, le=150)] = gpu_check.DEFAULT_TEMPERATURE_WARN_C
    temperature_fail_c: Annotated[float, Field(gt=0, le=150)] = gpu_check.DEFAULT_TEMPERATURE_FAIL_C

    @model_validator(mode="after")
    def _ordered(self) -> GpuCheckConfig:
        if self.temperature_fail_c <= self.temperature_warn_c:
            raise ValueError(
                f"temperature_fail_c ({self.temperature_fail_c:g}) must be above "
                f"temperature_warn_c ({self.temperature_warn_c:g})"
            )
        return self

    def build(self, http: httpx.AsyncClient) -> HealthCheck:
        return gpu_check.GpuCheck(
            indices=tuple(self.indices) if self.indices is not None else None,
            memory_warn=self.memory_warn,
            temperature_warn_c=self.temperature_warn_c,
            temperature_fail_c=self.temperature_fail_c,
        )


CHECK_TYPES: dict[str, type[CheckConfig]] = {
    "http": HttpCheckConfig,
    "tcp": TcpCheckConfig,
    "redis": RedisCheckConfig,
    "postgres": PostgresCheckConfig,
    "system": SystemCheckConfig,
    "llm": LlmCheckConfig,
    "gpu": GpuCheckConfig,
}
