"""TLS with a private CA generated in the test (trustme): servers present certificates,
clients verify them by default and refuse what they cannot verify."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
from pathlib import Path

import httpx
import pytest
import trustme

from fleetwatch.agent import Agent, AgentSettings, StopReason
from fleetwatch.config._registry import MonitorSection, ServeConfig
from fleetwatch.discovery import RegistryClient
from fleetwatch.errors import RegistryUnavailable
from fleetwatch.gateway import Gateway, GatewaySettings
from fleetwatch.lifecycle import AppServer
from fleetwatch.llm._check import LlmServerSettings
from fleetwatch.registry._prober import Prober
from fleetwatch.registry_api._node import RegistryNode
from fleetwatch.security._auth import Scope, Token, TokenAuth
from fleetwatch.security._tls import client_context, shared_client_context
from fleetwatch_testing import free_port, spawned
from fleetwatch_testing.openai_backend import OpenAIBackend
from tests._support.registry_node import TOKEN
from tests._support.waiting import poll_until


@pytest.fixture
def pki(tmp_path: Path) -> tuple[str, tuple[str, str]]:
    """(CA bundle path, (certificate path, key path)) for 127.0.0.1 and localhost."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    bundle, chain, key = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(bundle))
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    return str(bundle), (str(chain), str(key))


async def test_registry_over_tls_verifies_with_the_ca_and_refuses_without(
    pki: tuple[str, tuple[str, str]],
) -> None:
    """With the CA bundle the client registers over HTTPS; without it, it refuses the server."""
    bundle, files = pki
    node = RegistryNode(
        ServeConfig(), store_url="memory", auth=TokenAuth([Token("t", TOKEN, Scope.ALL)])
    )
    async with AppServer(node.app(), tls=files) as server:
        assert server.url.startswith("https://")
        async with RegistryClient(server.url, token=TOKEN, ca_bundle=bundle) as trusted:
            await trusted.register("svc", "a", {"host": "127.0.0.1", "port": 9})
            _, found = await trusted.instances("svc")
        async with RegistryClient(server.url, token=TOKEN) as untrusting:
            with pytest.raises(RegistryUnavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
                await untrusting.services()
    assert [i.instance_id for i in found] == ["a"]


async def test_gateway_over_tls(pki: tuple[str, tuple[str, str]]) -> None:
    """The gateway serves HTTPS and reaches an HTTPS registry through the CA bundle."""
    bundle, files = pki
    node = RegistryNode(
        ServeConfig(), store_url="memory", auth=TokenAuth([Token("t", TOKEN, Scope.ALL)])
    )
    async with AppServer(node.app(), tls=files) as registry:
        settings = GatewaySettings(
            service="llm", registry_url=registry.url, registry_token=TOKEN, ca_bundle=bundle
        )
        async with (
            Gateway(settings) as gateway,
            gateway.server(tls=files) as server,
            httpx.AsyncClient(verify=client_context(bundle)) as client,
        ):
            live = await client.get(f"{server.url}/livez")
            ready = await client.get(f"{server.url}/readyz")
    assert live.status_code == 200
    assert ready.json()["routable_instances"] == 0  # it reached the registry over TLS


async def test_serve_and_status_commands_with_tls(pki: tuple[str, tuple[str, str]]) -> None:
    """``fleetwatch serve --tls-cert --tls-key``; ``fleetwatch status`` trusts it through
    $FLEETWATCH_CA_BUNDLE."""
    bundle, (cert, key) = pki
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    env = {**os.environ, "FLEETWATCH_TOKEN": TOKEN, "FLEETWATCH_CA_BUNDLE": bundle}
    async with spawned(
        sys.executable, "-m", "fleetwatch", "serve", "--port", str(port),
        "--tls-cert", cert, "--tls-key", key,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    ):  # fmt: skip
        async with RegistryClient(url, token=TOKEN, ca_bundle=bundle) as client:

            async def up() -> bool:
                try:
                    await client.services()
                except RegistryUnavailable:
                    return False
                return True

            await poll_until(up, True, within=20)
        async with spawned(
            sys.executable, "-m", "fleetwatch", "status", "--registry", url, "--json",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        ) as status, asyncio.timeout(30):  # fmt: skip
            out, err = await status.communicate()
    assert status.returncode == 0, err.decode()
    assert json.loads(out)["registry"] == url


async def test_half_a_tls_configuration_is_refused() -> None:
    """--tls-cert without --tls-key exits 64 saying both are needed."""
    async with spawned(
        sys.executable, "-m", "fleetwatch", "serve", "--tls-cert", "/etc/hostname",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    ) as process, asyncio.timeout(30):  # fmt: skip
        out, _ = await process.communicate()
    assert process.returncode == 64
    assert b"both --tls-cert and --tls-key" in out


@pytest.mark.parametrize("monitor_trusts_the_ca", [True, False])
async def test_agent_probe_port_over_tls(
    pki: tuple[str, tuple[str, str]], monitor_trusts_the_ca: bool
) -> None:
    """An agent serves its probe port over HTTPS and registers it so; the monitor checks it with
    the CA bundle (available), and without it refuses the certificate (unavailable)."""
    bundle, files = pki
    monitor = MonitorSection(ca_bundle=bundle if monitor_trusts_the_ca else None)
    node = RegistryNode(
        ServeConfig(monitor=monitor),
        store_url="memory",
        auth=TokenAuth([Token("t", TOKEN, Scope.ALL)]),
    )
    async with (
        AppServer(node.app(), tls=files) as registry,
        OpenAIBackend() as backend,
        RegistryClient(registry.url, token=TOKEN, ca_bundle=bundle) as api,
    ):
        settings = AgentSettings(
            service="llm",
            llm=LlmServerSettings(base_url=backend.url, kind="openai"),
            registry_url=registry.url,
            token=TOKEN,
            ttl=3.0,
            propagation_delay=0.1,
            tls=files,
            ca_bundle=bundle,
        )
        agent = Agent(settings)
        task = asyncio.create_task(agent.run(handle_signals=False))
        try:
            async with asyncio.timeout(10):
                await agent.ready.wait()
            async with (
                asyncio.timeout(5),
                httpx.AsyncClient(verify=client_context(bundle)) as client,
            ):
                assert agent.http is not None
                agent_page = await client.get(f"https://127.0.0.1:{agent.http.port}/livez")

            async def seen() -> tuple[str, str]:
                _, instances = await api.instances("llm")
                found = instances[0] if instances else None
                if found is None or found.last_check_at is None:
                    return ("", "")
                return (found.check.agent_scheme, found.status.value)

            wanted = "available" if monitor_trusts_the_ca else "unavailable"
            await poll_until(seen, ("https", wanted), within=15)
            _, instances = await api.instances("llm")
        finally:
            agent.request_stop(StopReason.REQUESTED, "test over")
            async with asyncio.timeout(20):
                await task
    assert agent_page.status_code == 200
    if not monitor_trusts_the_ca:
        assert "certificate" in (instances[0].last_check_output or "").lower()


def _rotate(bundle: Path, pem: bytes) -> None:
    """Replace the bundle's contents, its modification time visibly later (as a rotation is)."""
    bundle.write_bytes(pem)
    stat = bundle.stat()
    os.utime(bundle, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_a_rotated_ca_bundle_is_read_again_and_a_broken_one_is_not_used(tmp_path: Path) -> None:
    """The shared context follows a rotated bundle file; while the file is missing or unparsable
    the CAs read before stay in use instead of failing every connection."""
    first, second = trustme.CA(), trustme.CA()
    bundle = tmp_path / "ca.pem"
    _rotate(bundle, first.cert_pem.bytes())
    before = shared_client_context(str(bundle))
    assert shared_client_context(str(bundle)) is before  # unchanged file: shared, not reloaded
    _rotate(bundle, second.cert_pem.bytes())
    after = shared_client_context(str(bundle))
    assert after is not before
    assert after.get_ca_certs(binary_form=True) == [
        ssl.PEM_cert_to_DER_cert(second.cert_pem.bytes().decode())
    ]
    bundle.unlink()
    assert shared_client_context(str(bundle)) is after
    bundle.write_text("-----BEGIN CERTIFICATE-----\nhalf written")
    assert shared_client_context(str(bundle)) is after
    # A copy that keeps the old modification time (cp -p, rsync -t) is a rotation too.
    kept = bundle.stat().st_mtime_ns
    bundle.write_bytes(first.cert_pem.bytes())
    os.utime(bundle, ns=(kept, kept))
    again = shared_client_context(str(bundle))
    assert again.get_ca_certs(binary_form=True) == [
        ssl.PEM_cert_to_DER_cert(first.cert_pem.bytes().decode())
    ]


async def test_the_monitor_picks_up_a_rotated_ca_bundle(
    tmp_path: Path, pki: tuple[str, tuple[str, str]]
) -> None:
    """A probe refused because the bundle lacks the server's CA passes once the bundle file is
    replaced with one that has it, without restarting the monitor."""
    server_ca, files = pki
    bundle = tmp_path / "monitor-ca.pem"
    server_ca_pem = Path(server_ca).read_bytes()  # noqa: ASYNC240 (a small local file)
    _rotate(bundle, trustme.CA().cert_pem.bytes())  # another CA: the server's cert is refused
    node = RegistryNode(ServeConfig(), store_url="memory")
    async with AppServer(node.app(), tls=files) as server:
        prober = Prober(
            "127.0.0.1", server.port, path="/livez", scheme="https", ca_bundle=str(bundle)
        )
        refused = await prober.probe(5)
        _rotate(bundle, server_ca_pem)
        accepted = await prober.probe(5)
        prober.close()
    assert not refused.passed
    assert "certificate" in refused.output.lower()
    assert accepted.passed, accepted.output
