"""Durations as numbers of seconds or strings such as ``"500ms"``, ``"2s"``, ``"1m"``."""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from ``2``, ``2.5``, ``"500ms"``, ``"2s"``, ``"1.5m"`` or ``"1h"``.

    Raises ``ValueError`` naming the allowed forms for anything else, or a value <= 0.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(
            f"invalid duration {value!r}: use seconds as a number (2, 0.5) or a string with a "
            "unit: '500ms', '2s', '1m', '1h'"
        )
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"a duration must be a finite number greater than zero, got {value!r}")
    return seconds
