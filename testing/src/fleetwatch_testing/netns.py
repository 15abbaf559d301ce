"""Several hosts on one machine: a Linux network namespace each, joined to the root one by a
veth pair, with one address per host. The registry and the gateway stay in the root namespace.

Addresses come from 10.213.0.0/24, a /30 per host (root side ``.4n+1``, host side
``.4n+2``), chosen to overlap no route this machine has (its eth0 sits in 192.0.2.0/24);
:class:`SimulatedHosts` checks with ``ip route get`` that each host address goes out its own
veth before anything is sent. Namespaces are named ``fwt-h<N>`` and links ``fwv<N>``: an
earlier run's leftovers are swept by those prefixes first, their processes killed before the
namespace goes. Where namespaces cannot be made (no root, no ``ip``), each host gets a
loopback address of its own instead (127.0.0.2, .3, ...) and :attr:`SimulatedHosts.mode`
says so.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

NAMESPACE_PREFIX = "fwt-h"
LINK_PREFIX = "fwv"
SUBNET = ipaddress.ip_network("10.213.0.0/24")
_IP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SimulatedHost:
    """One simulated machine."""

    number: int
    #: Where the host's instances listen, and clients reach them.
    address: str
    #: The root namespace's address as this host sees it (where it reaches the registry).
    root_address: str
    #: The namespace it runs in (None in loopback mode).
    namespace: str | None

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host."""
        if self.namespace is None:
            return list(argv)
        return ["ip", "netns", "exec", self.namespace, *argv]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=_IP_TIMEOUT_S, check=check
    )


def _kill_namespace_processes(namespace: str) -> None:
    listed = _ip("netns", "pids", namespace, check=False).stdout.split()
    for pid in listed:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def sweep() -> list[str]:
    """Remove namespaces and links an earlier run left behind; the names removed."""
    if shutil.which("ip") is None:
        return []
    removed = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(NAMESPACE_PREFIX):
            _kill_namespace_processes(name)
            _ip("netns", "del", name, check=False)
            removed.append(name)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":")
        name = parts[1].strip().split("@")[0] if len(parts) > 1 else ""
        if name.startswith(LINK_PREFIX):
            _ip("link", "del", name, check=False)
            removed.append(name)
    return removed


class SimulatedHosts:
    """``count`` hosts, in namespaces where possible; everything removed on exit."""

    def __init__(self, count: int, *, allow_namespaces: bool = True) -> None:
        self.count = count
        self.allow_namespaces = allow_namespaces
        self.hosts: list[SimulatedHost] = []
        self.mode = "loopback"
        self.reason = ""

    def __enter__(self) -> SimulatedHosts:
        if self.allow_namespaces and os.geteuid() == 0 and shutil.which("ip"):
            sweep()
            try:
                self._make_namespaces()
                self.mode = "netns"
            except (subprocess.CalledProcessError, OSError, RuntimeError) as exc:
                self.reason = f"(namespaces refused: {getattr(exc, 'stderr', '') or exc})".strip()
                self._remove()
                self.hosts = []
        elif not self.allow_namespaces:
            self.reason = "(namespaces not asked for)"
        else:
            self.reason = "(not root, or no ip command)"
        if not self.hosts:
            self.hosts = [
                SimulatedHost(n, f"127.0.0.{n + 2}", "127.0.0.1", None) for n in range(self.count)
            ]
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._remove()

    def _make_namespaces(self) -> None:
        addresses = list(SUBNET.hosts())
        for n in range(self.count):
            namespace, link = f"{NAMESPACE_PREFIX}{n}", f"{LINK_PREFIX}{n}"
            peer = f"{link}p"
            root, host = str(addresses[4 * n]), str(addresses[4 * n + 1])
            self.hosts.append(SimulatedHost(n, host, root, namespace))
            _ip("netns", "add", namespace)
            _ip("link", "add", link, "type", "veth", "peer", "name", peer)
            _ip("link", "set", peer, "netns", namespace)
            _ip("addr", "add", f"{root}/30", "dev", link)
            _ip("link", "set", link, "up")
            _ip("-n", namespace, "addr", "add", f"{host}/30", "dev", peer)
            _ip("-n", namespace, "link", "set", peer, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            route = _ip("route", "get", host).stdout
            if f"dev {link}" not in route:
                raise RuntimeError(f"{host} would not go out {link}: {route.strip()}")

    def _remove(self) -> None:
        for host in self.hosts:
            if host.namespace is not None:
                _kill_namespace_processes(host.namespace)
                _ip("netns", "del", host.namespace, check=False)
                _ip("link", "del", f"{LINK_PREFIX}{host.number}", check=False)

    def leftovers(self) -> list[str]:
        """Namespaces and links of ours that still exist (none, after exit)."""
        if shutil.which("ip") is None:
            return []
        names = [
            line.split()[0]
            for line in _ip("netns", "list", check=False).stdout.splitlines()
            if line.split()
        ]
        links = [
            part.split(":")[1].strip().split("@")[0]
            for part in _ip("-o", "link", "show", check=False).stdout.splitlines()
            if len(part.split(":")) > 1
        ]
        return [n for n in names if n.startswith(NAMESPACE_PREFIX)] + [
            link for link in links if link.startswith(LINK_PREFIX)
        ]
