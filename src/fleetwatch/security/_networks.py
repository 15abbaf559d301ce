"""The SSRF guard: the registry contacts only addresses inside its allowed networks.

Anyone with a ``register`` token could otherwise point the monitor at an internal admin
service, or at a cloud metadata endpoint (169.254.169.254), and read its answers back through
check outputs. So:

- registrations are refused (403, naming the address and the allowed networks) when their
  host is, or resolves to, an address outside the allowed networks;
- the monitor resolves the host again at every new connection and connects to the checked
  address itself, so a name that later resolves elsewhere (DNS rebinding) is refused then;
- IPv4-mapped IPv6 addresses (``::ffff:10.0.0.1``) are judged as the IPv4 address they are;
- link-local addresses (169.254.0.0/16, fe80::/10: cloud metadata) are never allowed unless a
  configured network is itself link-local;
- the monitor never follows redirects, so a redirect cannot lead anywhere.

Default: loopback and the private ranges.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable

from fleetwatch.errors import Forbidden

DEFAULT_ALLOWED_NETWORKS = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
RESOLVE_TIMEOUT_S = 2.0
#: ``(host, port) -> addresses``: the system's resolver unless a test supplies one.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def _system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class AddressNotAllowed(Forbidden):
    """A host that is, or resolves to, an address outside the allowed networks."""


def _normalised(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class NetworkPolicy:
    """Allowed networks, and the checks against them."""

    def __init__(
        self, networks: Iterable[str] | None = None, *, resolver: Resolver | None = None
    ) -> None:
        self._resolver = resolver
        chosen = list(networks) if networks is not None else list(DEFAULT_ALLOWED_NETWORKS)
        try:
            self.networks: list[Network] = [ipaddress.ip_network(n, strict=False) for n in chosen]
        except ValueError as exc:
            raise ValueError(f"allowed network: {exc}") from None
        self._listing = ", ".join(str(n) for n in self.networks) or "none"

    def allows(self, address: str) -> bool:
        """Whether an IP address (text) may be contacted."""
        try:
            ip = _normalised(ipaddress.ip_address(address.split("%", 1)[0]))
        except ValueError:
            return False
        for network in self.networks:
            if ip.version != network.version or ip not in network:
                continue
            if ip.is_link_local and not network.network_address.is_link_local:
                continue  # metadata endpoints need a network that names them
            return True
        return False

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses ``host`` resolves to now, all checked; raises AddressNotAllowed."""
        try:
            literal = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                    addresses = await (self._resolver or _system_resolver)(host, port)
            except (OSError, TimeoutError) as exc:
                raise AddressNotAllowed(f"host {host!r} does not resolve: {exc}") from None
        refused = [a for a in addresses if not self.allows(a)]
        if refused or not addresses:
            shown = ", ".join(refused) or "nothing"
            raise AddressNotAllowed(
                f"host {host!r} is {shown}, outside the allowed networks ({self._listing}); "
                "allow it with `fleetwatch serve --allow-network CIDR` or `allowed_networks`"
            )
        return addresses
