"""Configuration files: TOML with ``[service]``, ``[aggregation]`` and ``[[checks]]`` tables."""

from fleetwatch.config._checks import CHECK_TYPES, CheckConfig
from fleetwatch.config._durations import parse_duration
from fleetwatch.config._loader import (
    AggregationConfig,
    HealthConfig,
    ServiceConfig,
    load_config,
    parse_config,
)

__all__ = [
    "CHECK_TYPES",
    "AggregationConfig",
    "CheckConfig",
    "HealthConfig",
    "ServiceConfig",
    "load_config",
    "parse_config",
    "parse_duration",
]
