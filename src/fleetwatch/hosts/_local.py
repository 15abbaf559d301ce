"""The instances a host runs, as files that outlive its daemon.

Each instance is a ``fleetwatch agent`` (with its server under it) started in a session of
its own, writing to a log file: nothing ties it to the daemon, so it serves, heartbeats and
drains on its own while the daemon is down. The daemon records each one in
``STATE_DIR/instances/<id>.json`` (the order, the agent's pid and the process's start time)
and, when it starts again, adopts every recorded process that still runs: the same pid *and*
the same start time, so a pid the kernel gave to another process is never taken for it.

A record is written before the agent is spawned (``pid`` 0) and completed after: a daemon
killed in between finds the agent again by its instance id on the command line.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger("fleetwatch.host")

#: The layout of a record. A reader takes older records too: it needs only the instance id,
#: the pid and the start time, and ignores what it does not know.
STATE_FORMAT = 1
#: Start times read twice from /proc agree to the tick; this allows for float rounding.
_SAME_START_S = 0.05


@dataclass(frozen=True, slots=True)
class LocalInstance:
    """One instance this host started, as its record says."""

    instance_id: str
    #: Empty in a record that predates it (the registry still knows the instance's service).
    service: str = ""
    order_id: str = ""
    profile: str = ""
    version: str = ""
    #: The agent's pid, and its process start time (psutil's ``create_time``).
    pid: int = 0
    create_time: float = 0.0
    log: str = ""
    started_at: float = 0.0
    #: The fleetwatch version of the daemon that started it.
    fleetwatch_version: str = ""
    format: int = STATE_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LocalInstance:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def process_matches(pid: int, create_time: float) -> bool:
    """Whether ``pid`` runs and is the process that started at ``create_time`` (a zombie
    counts as gone; one that was our child is reaped)."""
    if pid <= 0:
        return False
    with contextlib.suppress(ChildProcessError):
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(process.create_time() - create_time) < _SAME_START_S
    except psutil.Error:
        return False


def find_agent(instance_id: str) -> psutil.Process | None:
    """The running ``fleetwatch agent`` of this user whose command line names
    ``--instance-id instance_id``."""
    for process in psutil.process_iter(["cmdline", "uids"]):
        cmdline = process.info.get("cmdline") or []
        uids = process.info.get("uids")
        # Only our own agents: this user's processes, a `fleetwatch ... agent` command line.
        ours = uids is not None and uids.real == os.geteuid()
        if not ours or "fleetwatch" not in cmdline or "agent" not in cmdline:
            continue
        if instance_id in cmdline:
            pairs = itertools.pairwise(cmdline)
            if ("--instance-id", instance_id) in pairs:
                return process
    return None


def spawn_detached(argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> int:
    """Start ``argv`` in a session of its own, its output appended to ``log_path``; its pid.

    posix_spawn, not Popen: the agent is not ours to wait for, and must outlive us.
    """
    with log_path.open("ab") as out, open(os.devnull, "rb") as devnull:
        return os.posix_spawn(
            argv[0],
            list(argv),
            dict(env),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull.fileno(), 0),
                (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                (os.POSIX_SPAWN_DUP2, out.fileno(), 2),
            ],
            setsid=True,
        )


def signal_instance(instance: LocalInstance, sig: signal.Signals) -> bool:
    """Send ``sig`` to the instance's agent if it is still that process; whether it was sent.
    SIGKILL goes to its whole session (the server under it too)."""
    if not process_matches(instance.pid, instance.create_time):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if sig is signal.SIGKILL:
            os.killpg(instance.pid, sig)
        else:
            os.kill(instance.pid, sig)
        return True
    return False


def log_tail(path: str, lines: int = 5) -> str:
    """The last lines of an instance's log, to say why it failed."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())


class InstanceTable:
    """The records in ``STATE_DIR/instances``, and the logs in ``STATE_DIR/logs``."""

    def __init__(self, state_dir: Path) -> None:
        self.records = state_dir / "instances"
        self.logs = state_dir / "logs"
        for folder in (self.records, self.logs):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._instances: dict[str, LocalInstance] = {}

    def __iter__(self) -> Iterator[LocalInstance]:
        return iter(list(self._instances.values()))

    def __len__(self) -> int:
        return len(self._instances)

    def get(self, instance_id: str) -> LocalInstance | None:
        return self._instances.get(instance_id)

    def by_order(self, order_id: str) -> LocalInstance | None:
        return next((i for i in self._instances.values() if i.order_id == order_id), None)

    def log_path(self, instance_id: str) -> Path:
        return self.logs / f"{instance_id}.log"

    def record(self, instance: LocalInstance) -> None:
        """Write the record (atomically: a crash leaves the old one or the new one)."""
        path = self.records / f"{instance.instance_id}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(instance.to_dict(), indent=1))
        os.replace(temporary, path)
        self._instances[instance.instance_id] = instance

    def forget(self, instance_id: str) -> None:
        self._instances.pop(instance_id, None)
        with contextlib.suppress(FileNotFoundError):
            (self.records / f"{instance_id}.json").unlink()

    def adopt(self) -> tuple[list[LocalInstance], list[LocalInstance]]:
        """Read every record: (the instances still running, adopted; those gone, forgotten)."""
        adopted: list[LocalInstance] = []
        gone: list[LocalInstance] = []
        for path in sorted(self.records.glob("*.json")):
            try:
                instance = LocalInstance.from_dict(json.loads(path.read_text()))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("host.record_unreadable %s: %s (left in place)", path, exc)
                continue
            if instance.pid == 0:  # the daemon died between the record and the spawn
                found = find_agent(instance.instance_id)
                if found is not None:
                    with contextlib.suppress(psutil.Error):
                        instance = replace(instance, pid=found.pid, create_time=found.create_time())
            if process_matches(instance.pid, instance.create_time):
                self.record(instance)
                adopted.append(instance)
            else:
                gone.append(instance)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return adopted, gone

    def started(self, instance: LocalInstance, pid: int) -> LocalInstance:
        """Complete a record once its agent runs."""
        try:
            create_time = psutil.Process(pid).create_time()
        except psutil.Error:
            create_time = time.time()
        done = replace(instance, pid=pid, create_time=create_time, started_at=time.time())
        self.record(done)
        return done
