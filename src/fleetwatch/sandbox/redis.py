"""A throwaway ``redis-server`` on loopback."""

from __future__ import annotations

import shutil
import signal
import tempfile
from pathlib import Path
from types import TracebackType

from fleetwatch.errors import SandboxError
from fleetwatch.sandbox._process import ServerProcess
from fleetwatch.sandbox.ports import free_port, port_open, wait_until


class RedisServer:
    """``redis-server`` on 127.0.0.1, a free port, no persistence, data in a temp dir.

    ``with RedisServer() as redis: redis.url`` gives a ready server; ``stop()`` and ``start()``
    take it away and bring it back on the same port.
    """

    def __init__(self, *, port: int | None = None, extra_args: list[str] | None = None) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise SandboxError(
                "redis-server is not installed; run `make setup` or `apt-get install redis-server`"
            )
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="fleetwatch-redis-"))
        self._extra = list(extra_args or [])
        self._process = ServerProcess(self._dir / "redis.log")

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self._process.pid

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it accepts connections."""
        self._process.spawn(
            [
                str(self.binary),
                "--port", str(self.port),
                "--bind", self.host,
                "--dir", str(self._dir),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                *self._extra,
            ]
        )  # fmt: skip
        wait_until(
            lambda: port_open(self.host, self.port),
            timeout=timeout,
            what=f"redis-server on port {self.port}",
            alive=self._process.running,
            log=str(self._process.log_path),
        )

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        self._process.stop()

    def kill(self) -> None:
        """Crash the server with SIGKILL."""
        self._process.stop(sig=signal.SIGKILL)

    def close(self) -> None:
        """Stop the server and delete its data."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
