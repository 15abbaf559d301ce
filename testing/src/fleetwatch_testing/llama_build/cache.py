"""The artifact cache: a folder outside any checkout, entries that appear whole or not at all.

An entry is a folder. It is filled in a temporary sibling, completed with a marker file, and
renamed into place, so a reader sees either nothing or a finished entry. A folder at an
entry's path without the marker (left by an older fleetwatch, or by hand) is not trusted: it
is removed and made again. Temporary folders of builds that were killed are swept up by the
next writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fleetwatch_testing.llama_build.errors import ArtifactError, Progress

#: Written last, inside the temporary folder, just before the rename.
MARKER = ".complete"
_PARTIAL = ".partial"


def cache_root() -> Path:
    """Where built and fetched artifacts live: ``$FLEETWATCH_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/fleetwatch``, else ``~/.cache/fleetwatch``."""
    explicit = os.environ.get("FLEETWATCH_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "fleetwatch"


def writable_folder(path: Path) -> Path:
    """``path``, created if needed; an :class:`ArtifactError` naming the way out if it cannot
    be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ArtifactError(
            f"the fleetwatch cache folder {path} cannot be written ({reason}). "
            "Set FLEETWATCH_CACHE_DIR to a folder you can write, for example "
            "FLEETWATCH_CACHE_DIR=/tmp/fleetwatch-cache make test"
        ) from exc
    return path


def is_complete(entry: Path) -> bool:
    """Whether ``entry`` was finished by :func:`install_entry`."""
    return (entry / MARKER).is_file()


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; empty if the file is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def install_entry(
    entry: Path,
    populate: Callable[[Path], dict[str, Any]],
    progress: Progress,
) -> Path:
    """Make ``entry`` atomically: ``populate(folder)`` fills a temporary folder and returns
    what to record in the marker; the folder is then renamed to ``entry``.

    The caller holds the entry's lock (:func:`locked`). If ``populate`` raises, nothing is
    left behind and ``entry`` is unchanged.
    """
    parent = writable_folder(entry.parent)
    for leftover in parent.glob(f".{entry.name}.*{_PARTIAL}"):
        progress(f"removing {leftover.name}, left by an interrupted setup")
        shutil.rmtree(leftover, ignore_errors=True)
    if entry.exists() and not is_complete(entry):
        progress(f"{entry} is incomplete (no {MARKER} marker): making it again")
        shutil.rmtree(entry)
    work = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=_PARTIAL, dir=parent))
    try:
        work.chmod(0o755)  # mkdtemp makes it private; a shared cache is read by others
        record = populate(work)
        record.setdefault("completed_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        (work / MARKER).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        if entry.exists():  # complete: someone without our lock finished first; keep theirs
            shutil.rmtree(work)
        else:
            work.rename(entry)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return entry


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` as JSON, never leaving a half-written file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}{_PARTIAL}")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    partial.replace(path)


@contextlib.contextmanager
def locked(name: str, progress: Progress) -> Iterator[None]:
    """One setup of ``name`` at a time across processes (two test runs, a demo beside CI).

    A second setup waits, saying which process it waits for, then finds the work done.
    """
    root = writable_folder(cache_root())
    with (root / f".{name}.lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            progress(f"waiting for another fleetwatch setup of {name} ({holder}) to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
