"""Turning pydantic's validation errors into messages that name file, table, field and value."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from fleetwatch.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
#: Which environment variable set a field: (check name or table name, field) -> variable.
Overrides = dict[tuple[str, str], str]


@dataclass(frozen=True, slots=True)
class Where:
    """Where a table being validated comes from, for error messages."""

    source: str
    overrides: Overrides
    check: str | None = None
    table: str | None = None


def validate(model: type[M], data: Any, where: Where) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, model, where) from None


def config_error(exc: ValidationError, model: type[BaseModel], where: Where) -> ConfigError:
    problems = []
    first_field = None
    scope = where.check or where.table or ""
    prefix = f"[{where.table}] " if where.table else ""
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(table)"
        first_field = first_field or field
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(model.model_fields))
            problems.append(f"{prefix}unknown field {field!r}; allowed fields: {allowed}")
        elif error["type"] == "missing":
            problems.append(f"{prefix}field {field!r} is required")
        else:
            message = error["msg"].removeprefix("Value error, ")
            shown = repr(error["input"])
            got = "" if shown in message else f" (got {shown})"
            variable = where.overrides.get((scope, str(error["loc"][0]) if error["loc"] else ""))
            origin = f" (set by environment variable {variable})" if variable else ""
            problems.append(f"{prefix}field {field!r}: {message}{got}{origin}")
    return ConfigError(
        "; ".join(problems), source=where.source, check=where.check, field=first_field
    )


def read_toml(path: str | Path) -> dict[str, Any]:
    """The parsed TOML file at ``path``; a ConfigError naming the file says what is wrong
    (missing, unreadable, not UTF-8, not TOML)."""
    source = str(path)
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("file not found", source=source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc}", source=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=source) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=source) from None
