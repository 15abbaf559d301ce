"""What every artifact step shares: its error and how it reports progress."""

from __future__ import annotations

import sys
from collections.abc import Callable

from fleetwatch.errors import FleetwatchError

#: Receives one line of progress ("fetching ...", "build 40%").
Progress = Callable[[str], None]


class ArtifactError(FleetwatchError):
    """Setting up the test LLM server failed; the message says what to do about it."""


def say(message: str) -> None:
    """The default progress: ``==> message`` on stderr, as the Makefile's own steps print."""
    print(f"==> {message}", file=sys.stderr, flush=True)
