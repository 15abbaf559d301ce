"""Simulated hosts running `fleetwatch host`, with `fleetwatch serve` in the root namespace:
the fleet the host-agent and deployment tests and the fleet benchmark drive (hosts from
:mod:`fleetwatch_testing.netns`). Every process is the real command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fleetwatch.gateway import Gateway, GatewaySettings
from fleetwatch.hosts._client import HostsClient
from fleetwatch.http1 import LeanServer
from fleetwatch_testing import free_port
from fleetwatch_testing.llama_build import ensure_llama_server, ensure_model
from fleetwatch_testing.netns import SimulatedHost, SimulatedHosts

#: The token `fleetwatch serve` accepts with every scope (tests and benchmarks only).
FLEET_TOKEN = "fleet-test-token"  # noqa: S105 - a throwaway test secret
TOKEN = FLEET_TOKEN
LLAMA, FAST, STATIC = "smol", "fast", "static"
#: The agent settings every profile runs with: quick leases and drains.
AGENT_ARGS = ["--ttl", "3s", "--propagation-delay", "500ms", "--drain-timeout", "20s"]


def host_token(n: int) -> str:
    return f"host-secret-{n}"


def _serve_config(path: Path, hosts: int) -> Path:
    tokens = "".join(
        f'[[tokens]]\nname = "h{n}"\ntoken_env = "FW_TEST_HOST{n}"\n'
        f'scopes = ["host", "register", "read"]\nhost = "h{n}"\n\n'
        for n in range(hosts)
    )
    path.write_text(tokens)
    return path


@dataclass(frozen=True)
class HostShape:
    """What every simulated host's host.toml says beyond its identity."""

    capacity: int
    model: Path
    llama_server: Path
    agent_args: Sequence[str] = tuple(AGENT_ARGS)
    #: The daemon's lease (it reports every third of it).
    host_ttl: str = "3s"


def _host_config(tmp: Path, host: SimulatedHost, registry_port: int, shape: HostShape) -> Path:
    """h<N>'s host.toml: three profiles (fast test server, llama.cpp, a static server)."""
    model, capacity, agent_args = shape.model, shape.capacity, list(shape.agent_args)
    llama = [
        str(shape.llama_server), "-m", "{model}", "-c", "{ctx}", "--alias", "smol",
        "--host", "{address}", "--port", "{port}", "--threads", "1", "--parallel", "2",
        "--metrics", "--slots", "--no-webui",
    ]  # fmt: skip
    fast = [
        sys.executable, "-m", "fleetwatch_testing.openai_backend", "--host", "{address}",
        "--port", "{port}", "--tokens", "{tokens}", "--token-delay", "0.01", "--mode", "{mode}",
    ]  # fmt: skip
    static = ["/usr/bin/python3", "-m", "http.server", "--bind", "{address}", "{port}"]
    config = {
        "state": str(tmp / f"h{host.number}"),
        "registry": f"http://{host.root_address}:{registry_port}",
    }
    text = f"""
[host]
id = "h{host.number}"
address = "{host.address}"
registry = "{config["registry"]}"
token_env = "FW_TEST_HOST{host.number}"
labels = {{ zone = "z{host.number}" }}
capacity = {capacity}
state_dir = "{config["state"]}"
ttl = "{shape.host_ttl}"

[[profiles]]
name = "fast"
command = {json.dumps(fast)}
agent_args = {json.dumps(agent_args)}
ready_timeout = "60s"
[profiles.params]
tokens = {{ one_of = ["8", "200"], default = "8" }}
mode = {{ one_of = ["ok", "draining"], default = "ok" }}

[[profiles]]
name = "llama"
kind = "llamacpp"
command = {json.dumps(llama)}
agent_args = {json.dumps(agent_args)}
ready_timeout = "90s"
[profiles.params]
model = {{ path_under = "{model.parent}", suffix = ".gguf" }}
ctx = {{ one_of = ["512", "1024"], default = "1024" }}

[[profiles]]
name = "static"
command = {json.dumps(static)}
user = "nobody"
agent_args = {json.dumps(agent_args)}
"""
    path = tmp / f"host{host.number}.toml"
    path.write_text(text)
    return path


@dataclass
class Fleet:
    """The simulated machines, the registry, and a daemon per host."""

    sim: SimulatedHosts
    serve_config: Path
    store: str | None
    registry_url: str
    configs: list[Path]
    state_dirs: list[Path]
    logs: Path
    daemons: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: Pool processes, each running several hosts' daemons (see :mod:`host_pool`).
    pools: list[subprocess.Popen[bytes]] = field(default_factory=list)
    nodes: list[ServeNode] = field(default_factory=list)

    def start_daemon(self, n: int) -> None:
        host = self.sim.hosts[n]
        argv = host.command(
            [sys.executable, "-m", "fleetwatch", "host", "--config", str(self.configs[n])]
        )
        with (self.logs / f"daemon-h{n}.log").open("ab") as log:
            self.daemons[n] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def start_pools(self, per_pool: int, nice: int = 0) -> None:
        """The hosts' daemons ``per_pool`` to a process, with their instances' agents
        (``nice``: at that much lower a priority)."""
        for first in range(0, len(self.configs), per_pool):
            number = len(self.pools)
            argv = [
                sys.executable, "-m", "fleetwatch_testing.host_pool",
                "--socket", str(self.logs / f"pool-{number}.sock"), "--nice", str(nice),
                *map(str, self.configs[first : first + per_pool]),
            ]  # fmt: skip
            with (self.logs / f"pool-{number}.log").open("ab") as log:
                self.pools.append(
                    subprocess.Popen(
                        argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )

    def kill_daemon(self, n: int) -> None:
        daemon = self.daemons.pop(n)
        daemon.kill()
        daemon.wait(timeout=10)

    def daemon_log(self, n: int) -> str:
        return (self.logs / f"daemon-h{n}.log").read_text(errors="replace")

    def records(self, n: int) -> list[dict[str, object]]:
        folder = self.state_dirs[n] / "instances"
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]

    def client(self, token: str = TOKEN) -> HostsClient:
        return HostsClient(self.registry_url, token=token)


def _wait_ready(url: str, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"the registry at {url} never became ready")


def _kill_recorded(state_dir: Path) -> None:
    """SIGKILL every instance a host's records name (their whole sessions)."""
    for path in (state_dir / "instances").glob("*.json"):
        with contextlib.suppress(ValueError, OSError, ProcessLookupError, PermissionError):
            pid = int(json.loads(path.read_text())["pid"])
            if pid > 0:
                os.killpg(pid, signal.SIGKILL)


@dataclass
class ServeNode:
    """One `fleetwatch serve` process."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def node_id(self) -> str:
        """The node's id (what the controller lease names as its holder)."""
        reply = httpx.get(f"{self.url}/v1/monitor", headers=_AUTH, timeout=5)
        return str(reply.json()["node"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused node must be able to exit
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_AUTH = {"Authorization": f"Bearer {TOKEN}"}


def controller_lease(url: str) -> dict[str, object] | None:
    """Who holds the controller lease, as a node at ``url`` reports it."""
    reply = httpx.get(f"{url}/v1/deployments", headers=_AUTH, timeout=5)
    lease: dict[str, object] | None = reply.json().get("controller")
    return lease


def start_node(
    tmp: Path,
    number: int,
    port: int,
    config: Path,
    *,
    store: str | None = None,
    args: Sequence[str] = (),
) -> ServeNode:
    """`fleetwatch serve` number ``number`` on ``port``, ready."""
    env = {**os.environ, "FLEETWATCH_TOKEN": TOKEN}
    log = tmp / f"serve-{number}.log"
    argv = [
        sys.executable, "-m", "fleetwatch", "serve", "--host", "0.0.0.0",  # noqa: S104 - the hosts reach it over their veths
        "--port", str(port), "--config", str(config),
        *(["--store", store] if store else []), *args,
    ]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    node = ServeNode(f"http://127.0.0.1:{port}", process, log)
    _wait_ready(node.url, 30)
    return node


@contextlib.contextmanager
def running_fleet(
    tmp: Path,
    count: int = 3,
    *,
    nodes: int = 1,
    store: str | None = None,
    node_args: Sequence[Sequence[str]] = (),
    capacity: int = 3,
    namespaces: bool | None = None,
    agent_args: Sequence[str] = tuple(AGENT_ARGS),
    per_pool: int = 0,
    pool_nice: int = 0,
    host_ttl: str = "3s",
    host_nodes: Sequence[int] = (),
) -> Iterator[Fleet]:
    """``count`` hosts (namespaces, or loopback addresses), ``nodes`` `fleetwatch serve`
    processes on all addresses in the root namespace (sharing ``store`` when there are
    several), and `fleetwatch host` on each host; all of it gone after. The first node
    starts alone and takes the controller lease; hosts and clients use the last node.
    ``per_pool``: run the daemons that many to a process, each with its instances' agents
    (:mod:`fleetwatch_testing.host_pool`); 0, a `fleetwatch host` process each.
    ``pool_nice``: run the pools at that much lower a priority than the nodes.
    ``host_nodes``: the nodes the hosts (and so their agents) talk to, in turn; by default
    the last one."""
    ports = [free_port() for _ in range(nodes)]
    # FLEETWATCH_TEST_NETNS=0 runs the loopback fallback on purpose.
    if namespaces is None:
        namespaces = os.environ.get("FLEETWATCH_TEST_NETNS", "1") != "0"
    with SimulatedHosts(count, allow_namespaces=namespaces) as sim:
        print(f"\nsimulated hosts: {sim.mode} {sim.reason}".rstrip())
        os.environ.update({f"FW_TEST_HOST{n}": host_token(n) for n in range(count)})
        config = _serve_config(tmp / "serve.toml", count)
        talk_to = host_nodes or (nodes - 1,)
        shape = HostShape(
            capacity, ensure_model(), ensure_llama_server(), agent_args, host_ttl=host_ttl
        )
        fleet = Fleet(
            sim=sim,
            serve_config=config,
            store=store,
            registry_url=f"http://127.0.0.1:{ports[-1]}",
            configs=[
                _host_config(tmp, h, ports[talk_to[h.number % len(talk_to)]], shape)
                for h in sim.hosts
            ],
            state_dirs=[tmp / f"h{h.number}" for h in sim.hosts],
            logs=tmp,
        )
        try:
            for number, port in enumerate(ports):
                args = node_args[number] if number < len(node_args) else ()
                fleet.nodes.append(start_node(tmp, number, port, config, store=store, args=args))
                if number == 0 and nodes > 1:
                    wait_for_leader(fleet.nodes[0], 20)
            if per_pool:
                fleet.start_pools(per_pool, pool_nice)
            else:
                for n in range(count):
                    fleet.start_daemon(n)
            yield fleet
        finally:
            for n in list(fleet.daemons):
                fleet.kill_daemon(n)
            for pool in fleet.pools:
                pool.kill()
                pool.wait(timeout=10)
            for state_dir in fleet.state_dirs:
                _kill_recorded(state_dir)
            for node in fleet.nodes:
                node.stop()
    assert sim.leftovers() == []


def wait_for_leader(node: ServeNode, within: float) -> None:
    """Wait until ``node`` holds the controller lease."""
    me = node.node_id()
    deadline = time.monotonic() + within
    while (controller_lease(node.url) or {}).get("holder") != me:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{node.url} never took the controller lease")
        time.sleep(0.1)


async def hosts_up(fleet: Fleet, count: int, within: float = 30) -> None:
    """Wait until ``count`` hosts' daemons have reported."""
    async with fleet.client() as api, asyncio.timeout(within):
        while sum(alive for _, alive in await api.hosts()) < count:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def fleet_gateway(fleet: Fleet, service: str) -> AsyncIterator[LeanServer]:
    """A gateway for ``service`` in this process, once it sees an instance."""
    settings = GatewaySettings(
        service=service, registry_url=fleet.registry_url, registry_token=TOKEN
    )
    async with Gateway(settings) as gateway, gateway.server() as server:
        async with asyncio.timeout(15):
            while not gateway.discovery.cached(service):  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.1)
        yield server
