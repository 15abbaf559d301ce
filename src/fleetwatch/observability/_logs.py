"""Structured logs: namespaced event names with key-value fields, as JSON lines or for people.

fleetwatch logs an event name first (``agent.registered``, ``gateway.retry``...), then its
details; fields passed with ``extra=`` travel as keys. ``json`` writes one object per line
(``ts``, ``level``, ``logger``, ``event``, ``message`` and the fields); ``console`` writes
``time level event message key=value`` for people.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

FORMATS = ("console", "json")
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _event(record: logging.LogRecord) -> str:
    template = str(record.msg)
    first = template.split(" ", 1)[0] if template else ""
    return first if "." in first and "%" not in first else record.name


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": _event(record),
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS level event message key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{stamp} {record.levelname.lower():7} {record.getMessage()}"
        line = f"{line} {fields}" if fields else line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(log_format: str = "console", level: str = "info") -> None:
    """Send fleetwatch's (and uvicorn's) logs to stderr in ``log_format``."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r} is unknown; use one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
