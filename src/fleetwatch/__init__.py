"""fleetwatch: keep a fleet of LLM inference servers discoverable, honestly health-checked,
and replaceable without dropping a request.

Parts live in sub-packages, one per part of the system: ``fleetwatch.health`` (checks,
scheduling, aggregation, probe endpoints), ``fleetwatch.config`` (TOML configuration),
``fleetwatch.sandbox`` (throwaway local Redis/PostgreSQL/HTTP servers for tests and demos) and
``fleetwatch.cli``.
"""

from fleetwatch.errors import ConfigError, FleetwatchError

__version__ = "0.1.0"

__all__ = ["ConfigError", "FleetwatchError", "__version__"]
