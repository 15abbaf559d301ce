"""A throwaway PostgreSQL server (``initdb`` + ``postgres``) on loopback."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

from fleetwatch_testing._process import LocalServer
from fleetwatch_testing.errors import SandboxError
from fleetwatch_testing.ports import free_port

#: PostgreSQL refuses to run as root; when we are root we run it as this user (the Debian
#: package creates it).
UNPRIVILEGED_USER = "postgres"


def find_bin_dir() -> Path:
    """Where ``initdb`` and ``postgres`` live: ``$PG_BIN``, else Debian's newest version dir.

    Debian keeps them in ``/usr/lib/postgresql/<version>/bin``, which is not on PATH.
    """
    if env := os.environ.get("PG_BIN"):
        return Path(env)
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    for candidate in reversed(candidates):
        if (Path(candidate) / "postgres").exists():
            return Path(candidate)
    if found := shutil.which("initdb"):
        return Path(found).parent
    raise SandboxError(
        "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PATH); "
        "run `make setup` or `apt-get install postgresql`, or set PG_BIN"
    )


class PostgresServer(LocalServer):
    """``postgres`` on 127.0.0.1, a free port, trust auth for loopback, data in a temp dir.

    Runs as the unprivileged ``postgres`` user when started by root. ``dsn`` is ready to use;
    ``stop()`` and ``start()`` keep the port and data. Stopping is PostgreSQL's fast shutdown
    (SIGINT: abort transactions, close connections, exit cleanly).
    """

    stop_signal = signal.SIGINT
    stop_grace = 30.0

    def __init__(
        self,
        *,
        port: int | None = None,
        max_connections: int = 50,
        user: str = "fleetwatch",
    ) -> None:
        self.bin_dir = find_bin_dir()
        super().__init__(prefix="fleetwatch-pg-", log_name="postgres.log")
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.user = user
        self.max_connections = max_connections
        self._data = self._dir / "data"
        self._run_as = UNPRIVILEGED_USER if os.geteuid() == 0 else None
        if self._run_as:
            entry = pwd.getpwnam(self._run_as)
            os.chown(self._dir, entry.pw_uid, entry.pw_gid)
        self._initialised = False

    @property
    def dsn(self) -> str:
        """``postgresql://fleetwatch@127.0.0.1:PORT/postgres``."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/postgres"

    def _initdb(self) -> None:
        result = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "-D", str(self._data),
                "-U", self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            user=self._run_as,
            cwd=self._dir,
            check=False,
            timeout=120,
        )  # fmt: skip
        if result.returncode != 0:
            raise SandboxError(f"initdb failed ({result.returncode}): {result.stderr[-2000:]}")
        self._initialised = True

    def _ready(self) -> bool:
        result = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)],
            check=False,
            timeout=5,
        )
        return result.returncode == 0

    def start(self, timeout: float = 30.0) -> None:
        """Initialise on first start, start the server and wait until it accepts queries."""
        if not self._initialised:
            self._initdb()
        self._process.spawn(
            [
                str(self.bin_dir / "postgres"),
                "-D", str(self._data),
                "-p", str(self.port),
                "-k", str(self._dir),
                "-c", f"listen_addresses={self.host}",
                "-c", f"max_connections={self.max_connections}",
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
            ],
            user=self._run_as,
            cwd=str(self._dir),
        )  # fmt: skip
        self._await_ready(self._ready, timeout, f"postgres on port {self.port}")
