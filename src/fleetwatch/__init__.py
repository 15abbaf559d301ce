"""fleetwatch: keep a fleet of LLM inference servers discoverable, honestly health-checked,
and replaceable without dropping a request.

Parts live in sub-packages, one per part of the system: ``fleetwatch.health`` (checks,
scheduling, aggregation, probe endpoints), ``fleetwatch.config`` (TOML configuration),
``fleetwatch.cli`` and the rest. The test harness (throwaway servers, fuzzers, the load
generator, the llama.cpp build, the demo) is a separate, dev-only distribution,
``fleetwatch-testing`` under ``testing/``: it never ships in the fleetwatch wheel.
"""

from typing import Any

from fleetwatch.errors import ConfigError, FleetwatchError

__version__ = "0.1.0"

__all__ = ["ConfigError", "FleetwatchError", "__version__", "serve_llm_app"]


def __getattr__(name: str) -> Any:
    """``fleetwatch.serve_llm_app``, imported on first use (it pulls in the web stack)."""
    if name == "serve_llm_app":
        from fleetwatch.lifecycle._service import serve_llm_app  # noqa: PLC0415

        return serve_llm_app
    raise AttributeError(f"module 'fleetwatch' has no attribute {name!r}")
