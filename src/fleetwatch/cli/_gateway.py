"""``fleetwatch gateway``: an OpenAI-compatible proxy in front of one service."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fleetwatch.cli._logsetup import setup_logs
from fleetwatch.cli._options import CaBundle, RegistryToken, RegistryUrl, TlsCert, TlsKey
from fleetwatch.config._durations import parse_duration
from fleetwatch.config._recovery import parse_recovery
from fleetwatch.config._router import load_router, read_gateway_file
from fleetwatch.errors import ConfigError
from fleetwatch.gateway import Gateway, GatewaySettings
from fleetwatch.gateway import _settings as defaults
from fleetwatch.gateway.recovery import RecoverySettings
from fleetwatch.lifecycle import wait_for_stop_signal
from fleetwatch.routing import SCORER_NAMES, RouterSettings, Strategy, strategy_named
from fleetwatch.routing._strategies import scorer_weights
from fleetwatch.security._tls import server_files

DEFAULT_PORT = 8780
#: Comma-separated bearer tokens clients must present (unset: no client authentication).
CLIENT_TOKENS_ENV = "FLEETWATCH_GATEWAY_TOKENS"


async def run_gateway(
    settings: GatewaySettings,
    host: str,
    port: int,
    console: Console,
    tls: tuple[str, str] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM."""
    async with (
        Gateway(settings) as gateway,
        gateway.server(host=host, port=port, tls=tls) as server,
    ):
        tune_collector()
        routable = len(gateway.discovery.cached(settings.service))
        console.print(
            f"[bold]fleetwatch gateway[/] for [cyan]{settings.service}[/] on [cyan]{server.url}[/] "
            f"(OpenAI base URL {server.url}/v1; {routable} routable instance(s); "
            f"strategy {settings.router.strategy}, scorers "
            f"{', '.join(f'{s.name}={s.weight:g}' for s in gateway.router.scorers) or 'none'})"
        )
        recovery = settings.recovery
        sampled = ", ".join(sorted(recovery.sampled_routes)) or "none"
        console.print(
            f"stream recovery: {'on' if recovery.enabled and recovery.attempts else 'off'}"
            f" (greedy requests; sampled ones on: {sampled}; {recovery.attempts} attempt(s);"
            f" inter-token timeout {recovery.inter_token_timeout:g}s)"
        )
        if not settings.client_tokens:
            console.print(f"[yellow]no client tokens ({CLIENT_TOKENS_ENV} unset): open to all[/]")
        signal = await wait_for_stop_signal()
        console.print(f"{signal.name}: stopping")


def tune_collector() -> None:
    """Fewer garbage collections on the hot path: what start-up built is moved out of the
    collector's sight (it lives as long as the process), and the youngest generation is
    collected every 20,000 allocations rather than 700 (each request allocates a few hundred
    short-lived objects, almost none in cycles)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 100)


def parse_weights(items: list[str]) -> dict[str, float]:
    """``["prefix=2", "load=1"]`` as weights by scorer name."""
    weights: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError(f"--scorer {item!r}: write NAME=WEIGHT, such as prefix=2")
    return weights


def router_settings(
    config: Path | None,
    strategy: str | None,
    session_header: str | None,
    scorers: list[str] | None,
    cache_tokens: int | None,
) -> RouterSettings:
    """The ``[router]`` settings: the file's (or the defaults), then the options given."""
    router = load_router(config) if config is not None else RouterSettings()
    changes: dict[str, object] = {}
    if strategy is not None:
        changes["strategy"] = strategy_named(strategy).value
    if session_header is not None:
        changes["session_header"] = session_header
    if cache_tokens is not None:
        changes["cache_tokens"] = cache_tokens
    if scorers:
        changes["weights"] = {**router.weights, **parse_weights(scorers)}
    router = replace(router, **changes)  # type: ignore[arg-type]
    scorer_weights(strategy_named(router.strategy), router.weights)
    return router


def gateway_command(
    service: Annotated[str, typer.Option(help="The service to route to.")] = ...,  # type: ignore[assignment]
    registry: RegistryUrl = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = DEFAULT_PORT,
    strategy: Annotated[
        str | None,
        typer.Option(
            help=f"Routing: {', '.join(s.value for s in Strategy)} "
            "(default: the config file's, else prefix)."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="A TOML file with [router] and [recovery] sections.", dir_okay=False),
    ] = None,
    recovery: Annotated[
        bool | None,
        typer.Option(
            help="Continue greedy streams on another instance when their server breaks "
            "mid-stream (default: the config file's, else on)."
        ),
    ] = None,
    inter_token_timeout: Annotated[
        str | None,
        typer.Option(help="After the first token, no token for this long is a hung server."),
    ] = None,
    session_header: Annotated[
        str | None, typer.Option(help="Pin conversations by this request header.")
    ] = None,
    scorer: Annotated[
        list[str] | None,
        typer.Option(
            help=f"NAME=WEIGHT over the strategy's scorers ({', '.join(SCORER_NAMES)}); "
            "repeatable; 0 drops one."
        ),
    ] = None,
    prefix_cache_tokens: Annotated[
        int | None, typer.Option(help="Each instance's prompt cache, estimated in tokens.", min=1)
    ] = None,
    token: RegistryToken = None,
    upstream_api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable with the upstream API key.")
    ] = None,
    max_per_instance: Annotated[
        int, typer.Option(help="Requests in flight per instance.", min=1)
    ] = defaults.DEFAULT_PER_INSTANCE_LIMIT,
    queue: Annotated[
        int, typer.Option(help="Requests that may wait for a free instance.", min=0)
    ] = defaults.DEFAULT_QUEUE_LIMIT,
    queue_timeout: Annotated[str, typer.Option(help="Longest wait in that queue.")] = (
        f"{defaults.DEFAULT_QUEUE_TIMEOUT_S:g}s"
    ),
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    ca_bundle: CaBundle = None,
    timeout: Annotated[str, typer.Option(help="Per-request timeout.")] = (
        f"{defaults.DEFAULT_REQUEST_TIMEOUT_S:g}s"
    ),
) -> None:
    """Proxy /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models to the
    healthy instances of a service. Clients authenticate with a token from
    $FLEETWATCH_GATEWAY_TOKENS (comma-separated) when it is set."""
    setup_logs("info")
    console = Console()
    tokens = frozenset(
        t.strip() for t in os.environ.get(CLIENT_TOKENS_ENV, "").split(",") if t.strip()
    )
    api_key = None
    if upstream_api_key_env:
        api_key = os.environ.get(upstream_api_key_env)
        if api_key is None:
            raise ConfigError(
                f"--upstream-api-key-env: environment variable {upstream_api_key_env} is not set"
            )
    try:
        router = router_settings(config, strategy, session_header, scorer, prefix_cache_tokens)
        recovering = recovery_settings(config, recovery, inter_token_timeout)
        settings = GatewaySettings(
            service=service,
            registry_url=registry,
            registry_token=token,
            router=router,
            client_tokens=tokens,
            upstream_api_key=api_key,
            per_instance_limit=max_per_instance,
            queue_limit=queue,
            queue_timeout=parse_duration(queue_timeout),
            request_timeout=parse_duration(timeout),
            ca_bundle=ca_bundle,
            recovery=recovering,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    with asyncio.Runner(loop_factory=fastest_loop()) as runner:
        runner.run(run_gateway(settings, host, port, console, server_files(tls_cert, tls_key)))


def recovery_settings(
    config: Path | None, enabled: bool | None, inter_token_timeout: str | None
) -> RecoverySettings:
    """The ``[recovery]`` settings: the file's (or the defaults), then the options given."""
    settings = (
        parse_recovery(read_gateway_file(config), str(config))
        if config is not None
        else RecoverySettings()
    )
    if enabled is not None:
        settings = replace(settings, enabled=enabled)
    if inter_token_timeout is not None:
        settings = replace(settings, inter_token_timeout=parse_duration(inter_token_timeout))
    return settings


def fastest_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (the ``fast`` extra), else asyncio's."""
    if importlib.util.find_spec("uvloop") is None:
        return None
    import uvloop  # noqa: PLC0415 - optional

    return uvloop.new_event_loop
