"""The ``[recovery]`` section of a gateway's configuration file: continuing streams whose
server broke after the first byte (see docs/recovery.md).

```toml
[recovery]
enabled = true                 # greedy chat and completion streams are continued
attempts = 2                   # continuations per request, each on another instance
inter_token_timeout = "15s"    # no token for this long after the first: a hung server
sampled_routes = []            # routes whose sampled requests are continued too
```
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fleetwatch.config._durations import parse_duration
from fleetwatch.config._validation import Where, validate
from fleetwatch.errors import ConfigError
from fleetwatch.gateway.recovery._policy import (
    DEFAULT_ATTEMPTS,
    DEFAULT_INTER_TOKEN_TIMEOUT_S,
    ROUTES,
    RecoverySettings,
)


class RecoverySection(BaseModel):
    """``[recovery]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    attempts: int = Field(DEFAULT_ATTEMPTS, ge=0, le=5)
    inter_token_timeout: float = DEFAULT_INTER_TOKEN_TIMEOUT_S
    sampled_routes: list[str] = Field(default_factory=list)

    @field_validator("inter_token_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("sampled_routes")
    @classmethod
    def _routes(cls, routes: list[str]) -> list[str]:
        for route in routes:
            if route not in ROUTES:
                raise ValueError(f"{route!r} is not allowed; allowed: {', '.join(sorted(ROUTES))}")
        return routes

    def settings(self) -> RecoverySettings:
        """As the gateway takes it."""
        return RecoverySettings(
            enabled=self.enabled,
            attempts=self.attempts,
            inter_token_timeout=self.inter_token_timeout,
            sampled_routes=frozenset(self.sampled_routes),
        )


def parse_recovery(raw: dict[str, Any], source: str = "<config>") -> RecoverySettings:
    """The ``[recovery]`` table of a parsed gateway file (defaults when it has none)."""
    section = raw.get("recovery", {})
    if not isinstance(section, dict):
        raise ConfigError("[recovery] must be a table", source=source)
    return validate(RecoverySection, section, Where(source, {}, table="recovery")).settings()
