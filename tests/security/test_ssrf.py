"""The SSRF guard: registrations and monitor connections only inside the allowed networks."""

from __future__ import annotations

import asyncio
import sys

import pytest

from fleetwatch.discovery import RegistryClient
from fleetwatch.errors import Forbidden
from fleetwatch.registry._prober import Prober
from fleetwatch.security import NetworkPolicy
from fleetwatch.security._networks import AddressNotAllowed
from fleetwatch_testing import HttpBackend, free_port, spawned
from tests._support.registry_node import TOKEN, RunningRegistry
from tests._support.waiting import poll_until


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("192.168.1.1", True),
        ("172.31.0.1", True),
        ("::1", True),
        ("8.8.8.8", False),
        ("169.254.169.254", False),  # cloud metadata
        ("fe80::1", False),
        ("::ffff:169.254.169.254", False),  # IPv4-mapped forms are the IPv4 address
        ("::ffff:10.0.0.1", True),
        ("not-an-ip", False),
    ],
)
def test_default_networks(address: str, allowed: bool) -> None:
    """Loopback and private ranges pass; public, link-local and metadata addresses do not."""
    assert NetworkPolicy().allows(address) is allowed


def test_link_local_only_when_named() -> None:
    """0.0.0.0/0 does not open the metadata endpoint; naming 169.254.0.0/16 does."""
    assert not NetworkPolicy(["0.0.0.0/0"]).allows("169.254.169.254")
    assert NetworkPolicy(["0.0.0.0/0"]).allows("8.8.8.8")
    assert NetworkPolicy(["169.254.0.0/16"]).allows("169.254.169.254")


def test_a_bad_network_is_named() -> None:
    """A typo in the list fails at start-up with the value."""
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/33"):
        NetworkPolicy(["10.0.0.0/33"])


async def test_a_name_that_resolves_outside_is_refused() -> None:
    """A host name is judged by every address it resolves to (localhost: loopback, allowed)."""
    assert await NetworkPolicy().resolve("localhost", 80)
    with pytest.raises(AddressNotAllowed, match="does not resolve"):
        await NetworkPolicy().resolve("no-such-host.invalid", 80)
    with pytest.raises(AddressNotAllowed, match="outside the allowed networks"):
        await NetworkPolicy(["10.0.0.0/8"]).resolve("localhost", 80)


async def test_registrations_outside_are_refused_with_a_clear_error(
    registry: RunningRegistry, api: RegistryClient
) -> None:
    """A registration pointing at the metadata endpoint or a public address: 403, nothing stored."""
    for host in ("169.254.169.254", "8.8.8.8", "::ffff:169.254.169.254"):
        with pytest.raises(Forbidden, match="outside the allowed networks"):
            await api.register("svc", "evil", {"host": host, "port": 80})
    _, found = await api.instances("svc")
    assert found == []


async def test_the_monitor_checks_again_at_connect_time(backend: HttpBackend) -> None:
    """DNS rebinding: a prober whose policy no longer allows the address refuses to connect."""
    allowed = Prober("localhost", backend.port, policy=NetworkPolicy())
    result = await allowed.probe(2.0)
    assert result.passed
    allowed.close()
    rebound = Prober("localhost", backend.port, policy=NetworkPolicy(["10.0.0.0/8"]))
    refused = await rebound.probe(2.0)
    assert not refused.passed
    assert "refused by policy" in refused.output
    rebound.close()


async def test_serve_allow_network_option() -> None:
    """``fleetwatch serve --allow-network 10.0.0.0/8``: loopback registrations are refused."""
    port = free_port()
    async with spawned(
        sys.executable, "-m", "fleetwatch", "serve", "--port", str(port),
        "--allow-network", "10.0.0.0/8",
        env={"FLEETWATCH_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    ), RegistryClient(f"http://127.0.0.1:{port}", token=TOKEN) as client:  # fmt: skip

        async def up() -> bool:
            try:
                await client.services()
            except Exception:  # not listening yet
                return False
            return True

        await poll_until(up, True, within=20)
        with pytest.raises(Forbidden, match=r"127\.0\.0\.1"):
            await client.register("svc", "a", {"host": "127.0.0.1", "port": 80})
        await client.register("svc", "b", {"host": "10.0.0.5", "port": 80})
