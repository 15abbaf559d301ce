"""A throwaway ``redis-server`` on loopback."""

from __future__ import annotations

import shutil

import redis

from fleetwatch_testing._process import LocalServer
from fleetwatch_testing.errors import SandboxError
from fleetwatch_testing.ports import free_port, port_open, wait_until


class RedisServer(LocalServer):
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
        super().__init__(prefix="fleetwatch-redis-", log_name="redis.log")
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._extra = list(extra_args or [])

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{self.host}:{self.port}/0"

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
        self._await_ready(
            lambda: port_open(self.host, self.port), timeout, f"redis-server on port {self.port}"
        )


class SentinelServer(LocalServer):
    """A Redis Sentinel watching ``primary`` under the name ``name``, quick to fail over.

    ``down-after-milliseconds`` is 1000 (the default 30 s would make tests crawl).
    """

    def __init__(
        self, primary: RedisServer, *, name: str = "fleetwatch", port: int | None = None
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SandboxError("redis-server is not installed; run `make setup`")
        super().__init__(prefix="fleetwatch-sentinel-", log_name="sentinel.log")
        self.binary = binary
        self.name = name
        self.port = port or free_port()
        self.primary = primary

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:PORT/NAME/0``: what ``--store`` takes."""
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.name}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Write the (rewritable) config and start ``redis-server --sentinel``."""
        config = self._dir / "sentinel.conf"
        if not config.exists():
            config.write_text(
                f"port {self.port}\nbind 127.0.0.1\ndir {self._dir}\n"
                f"sentinel monitor {self.name} 127.0.0.1 {self.primary.port} 1\n"
                f"sentinel down-after-milliseconds {self.name} 1000\n"
                f"sentinel failover-timeout {self.name} 5000\n"
                f"sentinel parallel-syncs {self.name} 1\n"
            )
        self._process.spawn([self.binary, str(config), "--sentinel"])
        self._await_ready(
            lambda: port_open("127.0.0.1", self.port), timeout, f"sentinel on port {self.port}"
        )

    def await_replica(self, timeout: float = 15.0) -> None:
        """Wait until this sentinel knows a live replica of the primary, so a failover can happen.

        Sentinel learns about replicas from the primary's ``INFO`` (every 10 s once started); a
        primary killed before then leaves it with nothing to promote.
        """
        wait_until(
            self._knows_live_replica,
            timeout=timeout,
            what=f"sentinel on port {self.port} to see a live replica",
            alive=self._process.running,
            log=str(self._process.log_path),
        )

    def _knows_live_replica(self) -> bool:
        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2) as client:
            replicas = client.sentinel_slaves(self.name)
        return any(not r.get("is_sdown") and r.get("master-link-status") == "ok" for r in replicas)
