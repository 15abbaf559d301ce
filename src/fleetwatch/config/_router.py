"""The ``[router]`` section of a gateway's configuration file (``fleetwatch gateway --config``).

```toml
[router]
strategy = "prefix"            # see fleetwatch.routing._strategies
session_header = "x-session-id" # pin conversations by this header (default: off)
session_by_token = false        # without the header, pin by the client's token
block_chars = 256               # prefix blocks, in characters of the rendered prompt
cache_tokens = 65536            # each instance's prompt cache, estimated in tokens
max_imbalance = 4               # requests above the least loaded before affinity gives way
load_factor = 1.25              # a session moves past this share of the average load

[router.weights]                # over the strategy's preset; 0 drops a scorer
prefix = 2.0
load = 1.0
session = 0.5
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fleetwatch.config._validation import Where, read_toml, validate
from fleetwatch.errors import ConfigError
from fleetwatch.routing import SCORER_NAMES, RouterSettings, Strategy
from fleetwatch.routing._request import DEFAULT_BLOCK_CHARS
from fleetwatch.routing._settings import DEFAULT_CACHE_TOKENS
from fleetwatch.routing._strategies import scorer_weights

#: The tables of a gateway configuration file.
GATEWAY_TABLES = frozenset({"router", "recovery"})


class RouterSection(BaseModel):
    """``[router]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Strategy = Strategy.PREFIX
    weights: dict[str, float] = Field(default_factory=dict)
    session_header: str | None = Field(None, min_length=1, max_length=128)
    session_by_token: bool = False
    block_chars: int = Field(DEFAULT_BLOCK_CHARS, ge=16, le=65536)
    cache_tokens: int = Field(DEFAULT_CACHE_TOKENS, ge=1)
    max_imbalance: float = Field(4.0, ge=0, allow_inf_nan=False)
    load_factor: float = Field(1.25, ge=1, allow_inf_nan=False)

    @field_validator("weights")
    @classmethod
    def _known_scorers(cls, weights: dict[str, float]) -> dict[str, float]:
        for name, weight in weights.items():
            if name not in SCORER_NAMES:
                raise ValueError(f"unknown scorer {name!r}; known: {', '.join(SCORER_NAMES)}")
            if not 0 <= weight < float("inf"):
                raise ValueError(f"scorer {name!r}: a weight must be a finite number >= 0")
        return weights

    @model_validator(mode="after")
    def _weights_fit_strategy(self) -> RouterSection:
        scorer_weights(self.strategy, self.weights)  # a score-blind strategy takes none
        return self

    def settings(self) -> RouterSettings:
        """As the gateway takes it."""
        return RouterSettings(**{**self.model_dump(), "strategy": self.strategy.value})


def parse_router(raw: dict[str, Any], source: str = "<config>") -> RouterSettings:
    """The ``[router]`` table of a parsed file (defaults when it has none)."""
    unknown = sorted(set(raw) - GATEWAY_TABLES)
    if unknown:
        raise ConfigError(
            f"unknown table {unknown[0]!r}; a gateway configuration has [router] and [recovery]",
            source=source,
        )
    section = raw.get("router", {})
    if not isinstance(section, dict):
        raise ConfigError("[router] must be a table", source=source)
    return validate(RouterSection, section, Where(source, {}, table="router")).settings()


def load_router(path: str | Path) -> RouterSettings:
    """The ``[router]`` settings of the TOML file at ``path``."""
    return parse_router(read_gateway_file(path), str(path))


def read_gateway_file(path: str | Path) -> dict[str, Any]:
    """The parsed TOML of a gateway configuration file."""
    return read_toml(path)
