"""``fleetwatch agent``: register an unmodified LLM server, check it, report, drain."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from fleetwatch.agent import (
    PORT_PLACEHOLDER,
    Agent,
    AgentSettings,
    needs_port,
    start_on_free_port,
)
from fleetwatch.agent._settings import (
    DEFAULT_DRAIN_TIMEOUT_S,
    DEFAULT_LIVEZ_EVERY_S,
    DEFAULT_LOAD_EVERY_S,
    DEFAULT_PROPAGATION_DELAY_S,
    DEFAULT_STARTUP_GRACE_S,
    DEFAULT_TTL_S,
)
from fleetwatch.cli._logsetup import setup_logs
from fleetwatch.cli._options import CaBundle, RegistryToken, RegistryUrl, TlsCert, TlsKey
from fleetwatch.config._durations import parse_duration
from fleetwatch.errors import ConfigError
from fleetwatch.llm._adapters import KINDS
from fleetwatch.llm._check import (
    DEFAULT_CHECK_EVERY_S,
    DEFAULT_CHECK_TIMEOUT_S,
    LlmServerSettings,
)
from fleetwatch.llm._economy import DEFAULT_HOURLY_BUDGET, DEFAULT_MIN_INTERVAL_S
from fleetwatch.security._tls import server_files


def _duration(value: str, *, zero_ok: bool = False) -> float:
    if zero_ok and value.strip().rstrip("ms") in ("0", "0.0"):
        return 0.0
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _meta(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--meta takes KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def agent_settings(options: Mapping[str, Any]) -> AgentSettings:
    """The agent's settings from its command line's options, by name, checked as the command
    checks them (a benchmark's pooled agents read the same command line through it)."""
    o = options
    listen = str(o["listen"])
    host, _, port_text = listen.rpartition(":")
    if not host or not port_text.isdigit():
        raise typer.BadParameter(f"--listen takes HOST:PORT, got {listen!r}")
    api_key = None
    if o["api_key_env"]:
        api_key = os.environ.get(o["api_key_env"])
        if api_key is None:
            raise ConfigError(f"--api-key-env: environment variable {o['api_key_env']} is not set")
    try:
        llm = LlmServerSettings(
            base_url=o["upstream"],
            kind=o["kind"],
            model=o["model"],
            api_key=api_key,
            interval=_duration(o["check_every"]),
            timeout=_duration(o["check_timeout"]),
            probe_every=_duration(o["probe_every"]),
            hourly_token_budget=o["token_budget"],
        )
        settings = AgentSettings(
            service=o["service"],
            llm=llm,
            registry_url=o["registry"],
            token=o["token"],
            instance_id=o["instance_id"],
            version=o["version"],
            tags=frozenset(o["tag"] or ()),
            metadata=_meta(o["meta"] or []),
            weight=o["weight"],
            command=tuple(o["command"] or ()),
            run_as=o["run_as"],
            listen_host=host,
            listen_port=int(port_text),
            tls=server_files(o["tls_cert"], o["tls_key"]),
            ca_bundle=o["ca_bundle"],
            advertise_host=o["advertise_host"],
            ttl=_duration(o["ttl"]),
            propagation_delay=_duration(o["propagation_delay"], zero_ok=True),
            drain_timeout=_duration(o["drain_timeout"]),
            startup_grace=_duration(o["startup_grace"]),
            load_every=_duration(o["load_every"]),
            livez_every=_duration(o["livez_every"]),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if needs_port(settings) and not any(PORT_PLACEHOLDER in part for part in settings.command):
        raise ConfigError(
            f"--upstream has {PORT_PLACEHOLDER} but the command after -- does not: the agent "
            "chooses the port, so the server must be told it (for example --port {port})"
        )
    return settings


def agent_command(
    registry: RegistryUrl = None,
    service: Annotated[str, typer.Option(help="Service name to register under.")] = ...,  # type: ignore[assignment]
    upstream: Annotated[
        str,
        typer.Option(
            help="The LLM server's base URL, e.g. http://127.0.0.1:8080. With {port} in it "
            "(and in the command), the agent picks a free port and retries on another if the "
            "server loses it to another process."
        ),
    ] = ...,  # type: ignore[assignment]
    kind: Annotated[
        str, typer.Option(help=f"Server family: {', '.join(KINDS)} (openai = generic).")
    ] = "openai",
    model: Annotated[str | None, typer.Option(help="Model the server must serve.")] = None,
    token: RegistryToken = None,
    instance_id: Annotated[
        str | None, typer.Option(help="Instance id (default: stable, from host and port).")
    ] = None,
    version: Annotated[str, typer.Option(help="Version recorded in the registration.")] = "",
    tag: Annotated[list[str] | None, typer.Option(help="Tag (repeatable).")] = None,
    meta: Annotated[list[str] | None, typer.Option(help="Metadata KEY=VALUE (repeatable).")] = None,
    weight: Annotated[float, typer.Option(help="Routing weight.", min=0)] = 1.0,
    listen: Annotated[
        str, typer.Option(help="HOST:PORT for the agent's probe endpoints (port 0: any free).")
    ] = "127.0.0.1:0",
    advertise_host: Annotated[
        str | None, typer.Option(help="Host clients use for the upstream (default: its URL's).")
    ] = None,
    ttl: Annotated[str, typer.Option(help="Heartbeat lease.")] = f"{DEFAULT_TTL_S:g}s",
    propagation_delay: Annotated[
        str, typer.Option(help="Keep serving this long after saying 'draining'.")
    ] = f"{DEFAULT_PROPAGATION_DELAY_S:g}s",
    drain_timeout: Annotated[
        str, typer.Option(help="Longest wait for in-flight requests to finish.")
    ] = f"{DEFAULT_DRAIN_TIMEOUT_S:g}s",
    check_every: Annotated[
        str, typer.Option(help="How often the agent checks its server's readiness and load.")
    ] = f"{DEFAULT_CHECK_EVERY_S:g}s",
    check_timeout: Annotated[
        str, typer.Option(help="How long one readiness check of the server may take.")
    ] = f"{DEFAULT_CHECK_TIMEOUT_S:g}s",
    livez_every: Annotated[
        str, typer.Option(help="How often the registry checks that this agent is reachable.")
    ] = f"{DEFAULT_LIVEZ_EVERY_S:g}s",
    load_every: Annotated[
        str, typer.Option(help="Publish the server's load figures at most this often.")
    ] = f"{DEFAULT_LOAD_EVERY_S:g}s",
    probe_every: Annotated[
        str, typer.Option(help="At most one generation probe this often.")
    ] = f"{DEFAULT_MIN_INTERVAL_S:g}s",
    token_budget: Annotated[
        int, typer.Option(help="Most tokens generation probes may spend per hour.", min=0)
    ] = DEFAULT_HOURLY_BUDGET,
    startup_grace: Annotated[
        str, typer.Option(help="Report unavailable if still loading after this long.")
    ] = f"{DEFAULT_STARTUP_GRACE_S:g}s",
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    ca_bundle: CaBundle = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the upstream's API key.")
    ] = None,
    run_as: Annotated[
        str | None,
        typer.Option(help="Run the server as this user (the agent must be root)."),
    ] = None,
    command: Annotated[
        list[str] | None,
        typer.Argument(help="After --: the server to launch and own.", show_default=False),
    ] = None,
) -> None:
    """Register an LLM server with the registry, check it locally, report, and drain it.

    Example: fleetwatch agent --service llm --upstream http://127.0.0.1:8080 --kind llamacpp
    -- llama-server -m model.gguf --port 8080 --metrics
    """
    options = dict(locals())  # every option by name, before any other local is made
    setup_logs("info")
    settings = agent_settings(options)
    raise typer.Exit(asyncio.run(_run(settings)))


async def _run(settings: AgentSettings) -> int:
    """Start the server on a port chosen here when asked to, then run the agent."""
    child = None
    if needs_port(settings):
        settings, child = await start_on_free_port(settings)
    try:
        agent = Agent(settings, child=child)
    except BaseException:
        if child is not None:  # the server started here must not outlive a failed start
            await child.stop(settings.stop_timeout)
        raise
    return await agent.run()
