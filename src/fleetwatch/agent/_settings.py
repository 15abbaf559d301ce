"""What an agent is told: where the registry is, what it registers, how it drains."""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fleetwatch.llm._check import LlmServerSettings

#: How long a heartbeat lease lasts; the agent renews it every third of that.
#: How often the agent publishes its server's load (when it changed): what load-aware routing
#: reads. A fleet of hundreds on one registry node may want it less often.
DEFAULT_LOAD_EVERY_S = 1.0
#: How often the registry checks the agent is reachable: a dead agent is seen within about 3 s,
#: long before its lease lapses. Hundreds of agents on one node may want it less often.
DEFAULT_LIVEZ_EVERY_S = 1.0
#: A registry out of reach when the agent starts is asked again for this long (a swamped or
#: restarting one answers within it; a wrong address is still an error soon).
DEFAULT_REGISTER_WITHIN_S = 10.0
DEFAULT_TTL_S = 10.0
#: After saying ``draining``, keep serving this long so every client has seen it. The change
#: feed delivers in milliseconds (bench/propagation.py); a client polling every second, or a
#: gateway between retries, needs a little more.
DEFAULT_PROPAGATION_DELAY_S = 2.0
DEFAULT_DRAIN_TIMEOUT_S = 30.0
DEFAULT_STARTUP_GRACE_S = 600.0
#: After the drain, the child gets this long to exit on SIGTERM before SIGKILL.
DEFAULT_STOP_TIMEOUT_S = 10.0


def default_instance_id(host: str, port: int) -> str:
    """A stable id from this machine's name and the upstream port (restarts keep it)."""
    machine = socket.gethostname().split(".")[0] or "host"
    where = machine if host in ("127.0.0.1", "localhost", "::1", "0.0.0.0") else host  # noqa: S104
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", f"{where}-{port}").strip("-_.") or "instance"
    return cleaned[:63]


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """Everything ``fleetwatch agent`` needs; the CLI fills it from its options."""

    service: str
    llm: LlmServerSettings
    registry_url: str | None = None
    token: str | None = None
    instance_id: str | None = None
    version: str = ""
    tags: frozenset[str] = frozenset()
    metadata: Mapping[str, str] = field(default_factory=dict)
    weight: float = 1.0
    #: ``-- COMMAND``: the server to launch and own.
    command: tuple[str, ...] = ()
    #: Run the command as this user (the agent must be root to switch to it).
    run_as: str | None = None
    #: The agent's own probe endpoints (the registry's monitor checks the agent there).
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    #: (certificate, key): serve the probe endpoints over https.
    tls: tuple[str, str] | None = None
    #: CA bundle for the registry's certificate (default: system CAs or $FLEETWATCH_CA_BUNDLE).
    ca_bundle: str | None = None
    #: The address clients use for the upstream (default: the upstream URL's host).
    advertise_host: str | None = None
    ttl: float = DEFAULT_TTL_S
    load_every: float = DEFAULT_LOAD_EVERY_S
    #: How often the registry's monitor checks that the agent is reachable (its ``/livez``).
    livez_every: float = DEFAULT_LIVEZ_EVERY_S
    #: How long a registry out of reach at the start is waited for before the agent gives up.
    register_within: float = DEFAULT_REGISTER_WITHIN_S
    propagation_delay: float = DEFAULT_PROPAGATION_DELAY_S
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT_S
    stop_timeout: float = DEFAULT_STOP_TIMEOUT_S
    #: A server still loading after this long is reported unavailable (vLLM binds its port
    #: long before a large model is loaded, so this is generous).
    startup_grace: float = DEFAULT_STARTUP_GRACE_S

    @property
    def upstream_host(self) -> str:
        return urlsplit(self.llm.base_url).hostname or "127.0.0.1"

    @property
    def upstream_port(self) -> int:
        parts = urlsplit(self.llm.base_url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def upstream_scheme(self) -> str:
        return urlsplit(self.llm.base_url).scheme

    def resolved_instance_id(self) -> str:
        """The instance id: as given, or stable from host and port."""
        return self.instance_id or default_instance_id(self.upstream_host, self.upstream_port)
