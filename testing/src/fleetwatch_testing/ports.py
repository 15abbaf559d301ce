"""Free loopback ports and waiting for a port to answer."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from fleetwatch_testing.errors import SandboxError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    alive: Callable[[], bool] = lambda: True,
    log: str | None = None,
) -> None:
    """Poll ``ready`` until it is true; raise :class:`SandboxError` on timeout or early exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if not alive():
            raise SandboxError(f"{what} exited while starting{_tail(log)}")
        time.sleep(0.02)
    raise SandboxError(f"{what} did not become ready within {timeout:g}s{_tail(log)}")


def port_open(host: str, port: int) -> bool:
    """Whether a TCP connection to host:port succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _tail(log: str | None) -> str:
    if not log:
        return ""
    try:
        with open(log, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()[-15:]
    except OSError:
        return ""
    return "; last log lines:\n" + "\n".join(lines)
