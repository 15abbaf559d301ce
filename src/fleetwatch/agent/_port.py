"""The upstream's port, chosen where the server runs: by the agent that launches it.

A port found free and passed on can be taken before the server binds it (by another launch, on
a busy host). So the agent that starts the server picks the port, substitutes it for
``{port}`` in the upstream URL and the command, and watches the start: a server that exits
while another process holds its port lost the race, and is started again on a new port. A
server that exits for any other reason is left to the agent's usual handling of a dead child.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import psutil

from fleetwatch.agent._child import ChildProcess
from fleetwatch.agent._settings import AgentSettings
from fleetwatch.errors import FleetwatchError

log = logging.getLogger("fleetwatch.agent")

#: Written in ``--upstream`` and the command where the chosen port goes.
PORT_PLACEHOLDER = "{port}"
#: Starts tried before giving up: each lost race costs one.
DEFAULT_ATTEMPTS = 3
#: How long a start is watched for a lost port. Servers bind early (llama.cpp and vLLM bind
#: before loading the model), so a lost race shows within a second or two.
DEFAULT_BIND_WINDOW_S = 5.0
_POLL_S = 0.05


def needs_port(settings: AgentSettings) -> bool:
    """Whether the upstream's port is left to the agent (``{port}`` in ``--upstream``)."""
    return PORT_PLACEHOLDER in settings.llm.base_url


def pick_port(host: str) -> int:
    """A port the kernel says is free on ``host`` now (it may be taken a moment later)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def port_held(host: str, port: int) -> bool:
    """Whether some process listens on ``host:port`` (binding it fails with address-in-use)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
        return False


def with_port(settings: AgentSettings, port: int) -> AgentSettings:
    """``settings`` with ``port`` written wherever ``{port}`` stands."""
    number = str(port)
    llm = dataclasses.replace(
        settings.llm, base_url=settings.llm.base_url.replace(PORT_PLACEHOLDER, number)
    )
    command = tuple(part.replace(PORT_PLACEHOLDER, number) for part in settings.command)
    return dataclasses.replace(settings, llm=llm, command=command)


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid``, or one it started, listens on TCP ``port``."""
    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.Error:
        return False
    for process in family:
        with contextlib.suppress(psutil.Error):
            for conn in process.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                    return True
    return False


async def _lost_port(child: ChildProcess, host: str, port: int, window: float) -> bool:
    """Watch a start: True if the server exited while another process holds its port."""
    assert child.exited is not None
    assert child.pid is not None
    deadline = asyncio.get_running_loop().time() + window
    while asyncio.get_running_loop().time() < deadline:
        if child.exited.done():
            return await asyncio.to_thread(port_held, host, port)
        if await asyncio.to_thread(_listens, child.pid, port):
            return False
        await asyncio.sleep(_POLL_S)
    return False  # still starting: not a lost race so far, the agent takes it from here


async def start_on_free_port(
    settings: AgentSettings,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    bind_window: float = DEFAULT_BIND_WINDOW_S,
    choose: Callable[[str], int] = pick_port,
) -> tuple[AgentSettings, ChildProcess]:
    """Start the server on a port chosen here (``choose``), and on another if it loses it.

    Returns the settings with the port written in, and the running child. Raises
    :class:`FleetwatchError` after ``attempts`` lost races.
    """
    host = urlsplit(settings.llm.base_url.replace(PORT_PLACEHOLDER, "1")).hostname or "127.0.0.1"
    for attempt in range(1, attempts + 1):
        port = choose(host)
        concrete = with_port(settings, port)
        child = ChildProcess(concrete.command, user=concrete.run_as)
        await child.start()
        try:
            lost = await _lost_port(child, host, port, bind_window)
        except BaseException:  # cancelled or broken while watching: no server left behind
            await child.stop(timeout=1.0)
            raise
        if not lost:
            return concrete, child
        await child.stop(timeout=1.0)
        log.warning(
            "agent.port_taken %s:%d (try %d of %d): the server exited and another process "
            "holds the port; starting it on another",
            host, port, attempt, attempts,
        )  # fmt: skip
    raise FleetwatchError(
        f"the server lost its port to another process {attempts} times in a row on {host}; "
        "is something on this host taking ports as fast as they are chosen?"
    )
