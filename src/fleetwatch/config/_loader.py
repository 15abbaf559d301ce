"""Loads a health configuration file (TOML), applies environment overrides, validates it.

Errors name the file, the check, the field, the bad value and what is allowed.

Environment overrides use double underscores between levels:
``FLEETWATCH_CHECKS__<CHECK>__<FIELD>`` sets a field of the check named ``<CHECK>`` (case does
not matter; ``-`` and ``.`` in check names are written ``_``), and
``FLEETWATCH_SERVICE__<FIELD>`` / ``FLEETWATCH_AGGREGATION__<FIELD>`` set the other tables.
Values are read as TOML values when they parse as one (``2``, ``true``, ``["2xx"]``), else as
strings.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fleetwatch.config._checks import CHECK_TYPES, CheckConfig
from fleetwatch.config._validation import Overrides, Where, read_toml, validate
from fleetwatch.errors import ConfigError
from fleetwatch.health import CheckSettings, HealthCheck, ScoreThresholds

ENV_PREFIX = "FLEETWATCH_"
_TABLES = ("service", "aggregation", "checks")


class ServiceConfig(BaseModel):
    """``[service]``: identity shown in health+json documents."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = None
    version: str | None = None
    description: str | None = None


class AggregationConfig(BaseModel):
    """``[aggregation]``: the weighted-score thresholds and how one-shot runs execute."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    healthy_threshold: float = Field(0.8, ge=0, le=1, allow_inf_nan=False)
    degraded_threshold: float = Field(0.5, ge=0, le=1, allow_inf_nan=False)
    parallel: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> AggregationConfig:
        if self.degraded_threshold > self.healthy_threshold:
            raise ValueError(
                f"degraded_threshold ({self.degraded_threshold}) must not exceed "
                f"healthy_threshold ({self.healthy_threshold})"
            )
        return self

    def thresholds(self) -> ScoreThresholds:
        """As the health library's :class:`ScoreThresholds`."""
        return ScoreThresholds(self.healthy_threshold, self.degraded_threshold)


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """A validated configuration file."""

    source: str
    service: ServiceConfig
    aggregation: AggregationConfig
    checks: tuple[CheckConfig, ...]

    def build(self, http: httpx.AsyncClient) -> list[tuple[HealthCheck, CheckSettings]]:
        """Build every check, reading secrets from the environment now."""
        built = []
        for check in self.checks:
            try:
                built.append((check.build(http), check.settings()))
            except ValueError as exc:
                raise ConfigError(str(exc), source=self.source, check=check.name) from exc
        return built


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> HealthConfig:
    """Read, override from the environment and validate the TOML file at ``path``."""
    source = str(path)
    raw = read_toml(path)
    return parse_config(raw, source=source, environ=os.environ if environ is None else environ)


def parse_config(
    raw: dict[str, Any], *, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> HealthConfig:
    """Validate an already-parsed document (see :func:`load_config`)."""
    unknown = sorted(set(raw) - set(_TABLES))
    if unknown:
        raise ConfigError(
            f"unknown top-level key(s) {', '.join(map(repr, unknown))}; allowed: "
            + ", ".join(_TABLES),
            source=source,
        )
    checks_raw = raw.get("checks", [])
    if not isinstance(checks_raw, list) or not all(isinstance(c, dict) for c in checks_raw):
        raise ConfigError("`checks` must be an array of tables: [[checks]]", source=source)
    overrides = _apply_env(raw, checks_raw, environ or {}, source)
    service = validate(
        ServiceConfig, raw.get("service", {}), Where(source, overrides, table="service")
    )
    aggregation = validate(
        AggregationConfig,
        raw.get("aggregation", {}),
        Where(source, overrides, table="aggregation"),
    )
    checks: list[CheckConfig] = []
    seen: set[str] = set()
    for index, table in enumerate(checks_raw):
        check = _validate_check(table, index, source, overrides)
        if check.name in seen:
            raise ConfigError(f"duplicate check name {check.name!r}", source=source)
        seen.add(check.name)
        checks.append(check)
    return HealthConfig(source, service, aggregation, tuple(checks))


def _validate_check(
    table: dict[str, Any], index: int, source: str, overrides: Overrides
) -> CheckConfig:
    name = table.get("name")
    label = str(name) if isinstance(name, str) and name else f"checks[{index}]"
    kind = table.get("type")
    if kind is None:
        raise ConfigError(
            f"field 'type' is missing; known types: {', '.join(CHECK_TYPES)}",
            source=source,
            check=label,
            field="type",
        )
    model = CHECK_TYPES.get(str(kind))
    if model is None:
        raise ConfigError(
            f"field 'type': unknown check type {kind!r}; known types: {', '.join(CHECK_TYPES)}",
            source=source,
            check=label,
            field="type",
        )
    return validate(model, table, Where(source, overrides, check=label))


def _env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _normalise(name: str) -> str:
    return name.upper().replace("-", "_").replace(".", "_")


def _apply_env(
    raw: dict[str, Any], checks: list[dict[str, Any]], environ: Mapping[str, str], source: str
) -> Overrides:
    """Apply FLEETWATCH_*__* variables; return which variable set which (scope, field)."""
    by_name = {_normalise(str(c.get("name", ""))): c for c in checks}
    overrides: Overrides = {}
    for variable, text in sorted(environ.items()):
        if not variable.startswith(ENV_PREFIX) or "__" not in variable:
            continue
        parts = variable[len(ENV_PREFIX) :].split("__")
        table = parts[0].lower()
        if table == "checks" and len(parts) == 3 and all(parts):
            target = by_name.get(parts[1].upper())
            if target is None:
                raise ConfigError(
                    f"environment variable {variable} names no check; checks: "
                    + ", ".join(str(c.get("name")) for c in checks),
                    source=source,
                )
            field = parts[2].lower()
            target[field] = _env_value(text)
            overrides[(str(target.get("name")), field)] = variable
        elif table in ("service", "aggregation") and len(parts) == 2 and parts[1]:
            section = raw.setdefault(table, {})
            if not isinstance(section, dict):
                raise ConfigError(f"[{table}] must be a table", source=source)
            field = parts[1].lower()
            section[field] = _env_value(text)
            overrides[(table, field)] = variable
        else:
            raise ConfigError(
                f"environment variable {variable} is not an override fleetwatch knows; use "
                "FLEETWATCH_CHECKS__<CHECK>__<FIELD>, FLEETWATCH_SERVICE__<FIELD> or "
                "FLEETWATCH_AGGREGATION__<FIELD>",
                source=source,
            )
    return overrides
