"""Structured logs: JSON lines with event names and fields, or console lines."""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import pytest

from fleetwatch.observability._logs import ConsoleFormatter, JsonFormatter, configure_logging
from fleetwatch_testing import spawned


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("fleetwatch.test", logging.WARNING, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_the_event_name_and_fields() -> None:
    """The namespaced first word is the event; extra= fields become keys."""
    line = JsonFormatter().format(_record("agent.registered %s/%s", "llm", "a-1", service="llm"))
    entry = json.loads(line)
    assert entry["event"] == "agent.registered"
    assert entry["message"] == "agent.registered llm/a-1"
    assert entry["service"] == "llm"
    assert entry["level"] == "warning"
    assert entry["logger"] == "fleetwatch.test"


def test_console_lines_are_for_people() -> None:
    """Time, level, message, then key=value fields."""
    line = ConsoleFormatter().format(_record("gateway.retry on %s", "b", instance="b"))
    assert " warning gateway.retry on b instance=b" in line


def test_an_unknown_format_is_refused() -> None:
    """configure_logging names the formats it knows."""
    with pytest.raises(ValueError, match="use one of console, json"):
        configure_logging("xml")


async def test_the_cli_writes_json_lines() -> None:
    """``fleetwatch --log-format json agent ...``: every log line is a JSON object."""
    async with spawned(
        sys.executable, "-m", "fleetwatch", "--log-format", "json", "agent",
        "--registry", "http://127.0.0.1:9", "--service", "s", "--upstream", "http://127.0.0.1:9",
        "--", "/bin/sleep", "5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    ) as process:  # fmt: skip
        async with asyncio.timeout(30):
            _, err = await process.communicate()
    logs = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert process.returncode == 69
    assert any(entry["event"] == "agent.child_started" for entry in logs)
