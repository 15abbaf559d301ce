"""``fleetwatch hosts``: list hosts, order them to start and stop instances, cordon, drain."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fleetwatch.cli._options import RegistryToken, RegistryUrl
from fleetwatch.errors import FleetwatchError
from fleetwatch.hosts._client import HostsClient
from fleetwatch.hosts._model import Order, OrderAction, OrderState

hosts_app = typer.Typer(
    help="Hosts running `fleetwatch host`: list, order, cordon, drain.",
    no_args_is_help=False,
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
HostId = Annotated[str, typer.Argument(help="The host's id.")]
#: How long `start`, `stop` and `drain` follow one order before giving up on it.
FOLLOW_TIMEOUT_S = 900.0


def _params(pairs: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--param takes NAME=VALUE, got {pair!r}")
        found[key] = value
    return found


async def _follow(api: HostsClient, order: Order, console: Console, within: float) -> Order:
    """Print the order's states as they come until it finishes; the finished order."""
    index, seen = 0, None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        index, changed = await api.orders(order.host_id, index=index or None, wait=10)
        for found in changed:
            if found.order_id != order.order_id or found.state == seen:
                continue
            seen = found.state
            why = f": {found.reason}" if found.reason else ""
            console.print(f"  {found.order_id} {found.state.value}{why}", highlight=False)
            if found.state.finished:
                return found
    raise FleetwatchError(f"order {order.order_id} did not finish within {within:g}s")


def _order_id(prefix: str) -> str:
    return f"{prefix}-{int(time.time())}-{secrets.token_hex(3)}"


@hosts_app.callback()
def list_hosts(
    ctx: typer.Context,
    registry: RegistryUrl = None,
    token: RegistryToken = None,
) -> None:
    """List hosts: address, labels, slots in use, what runs, whether the daemon is up."""
    ctx.obj = (registry, token)
    if ctx.invoked_subcommand is not None:
        return

    async def show() -> None:
        async with HostsClient(registry, token=token) as api:
            hosts = await api.hosts()
        table = Table("host", "address", "up", "slots", "gpus", "labels", "instances", "version")
        for host, alive in hosts:
            state = ("yes" if alive else "DOWN") + (", cordoned" if host.cordoned else "")
            table.add_row(
                host.host_id,
                host.address,
                state,
                f"{len(host.instances)}/{host.capacity}",
                str(host.gpus),
                ",".join(f"{k}={v}" for k, v in sorted(host.labels.items())),
                " ".join(f"{i} ({s})" for i, s in sorted(host.instances.items())) or "-",
                host.version,
            )
        Console().print(table if hosts else "no host has reported")

    asyncio.run(show())


def _client(ctx: typer.Context) -> HostsClient:
    registry, token = ctx.obj
    return HostsClient(registry, token=token)


@hosts_app.command("start")
def start(
    ctx: typer.Context,
    host: HostId,
    service: Annotated[str, typer.Option(help="Service the instance serves.")] = ...,  # type: ignore[assignment]
    profile: Annotated[str, typer.Option(help="Launch profile of the host's config.")] = ...,  # type: ignore[assignment]
    version: Annotated[str, typer.Option(help="Version recorded in the registration.")] = "",
    param: Annotated[list[str] | None, typer.Option(help="NAME=VALUE (repeatable).")] = None,
    order_id: Annotated[str | None, typer.Option(help="Order id (resending it is safe).")] = None,
) -> None:
    """Order HOST to start an instance of a launch profile, and follow it to 'available'."""
    order = Order(
        order_id=order_id or _order_id("start"),
        host_id=host,
        action=OrderAction.START,
        service=service,
        profile=profile,
        version=version,
        params=_params(param or []),
    )
    raise typer.Exit(asyncio.run(_send(ctx, order, OrderState.AVAILABLE)))


@hosts_app.command("stop")
def stop(
    ctx: typer.Context,
    host: HostId,
    instance: Annotated[str, typer.Argument(help="The instance to drain and stop.")],
    service: Annotated[str, typer.Option(help="The instance's service.")] = ...,  # type: ignore[assignment]
) -> None:
    """Order HOST to drain and stop one of its instances, and follow it to 'stopped'."""
    order = Order(
        order_id=_order_id("stop"),
        host_id=host,
        action=OrderAction.STOP,
        service=service,
        instance_id=instance,
    )
    raise typer.Exit(asyncio.run(_send(ctx, order, OrderState.STOPPED)))


async def _send(ctx: typer.Context, order: Order, wanted: OrderState) -> int:
    console = Console()
    async with _client(ctx) as api:
        stored, created = await api.add_order(order)
        console.print(
            f"order {stored.order_id} to {stored.host_id}: {'written' if created else 'exists'}",
            highlight=False,
        )
        done = await _follow(api, stored, console, FOLLOW_TIMEOUT_S)
    return 0 if done.state is wanted else 1


@hosts_app.command("orders")
def orders(ctx: typer.Context, host: HostId) -> None:
    """The orders HOST's feed holds, and how far each got."""

    async def show() -> None:
        async with _client(ctx) as api:
            _, found = await api.orders(host)
        table = Table("order", "action", "service", "instance", "state", "reason")
        for order in found:
            target = order.profile if order.action is OrderAction.START else ""
            table.add_row(
                order.order_id,
                f"{order.action.value} {target}".strip(),
                order.service,
                order.instance_id or "-",
                order.state.value,
                order.reason,
            )
        Console().print(table)

    asyncio.run(show())


@hosts_app.command("cordon")
def cordon(ctx: typer.Context, host: HostId) -> None:
    """Stop new start orders from landing on HOST (what runs there keeps running)."""
    asyncio.run(_set_cordon(ctx, host, True))


@hosts_app.command("uncordon")
def uncordon(ctx: typer.Context, host: HostId) -> None:
    """Let start orders land on HOST again."""
    asyncio.run(_set_cordon(ctx, host, False))


async def _set_cordon(ctx: typer.Context, host: str, cordoned: bool) -> None:
    async with _client(ctx) as api:
        await api.cordon(host, cordoned)
    Console().print(f"{host}: {'cordoned' if cordoned else 'uncordoned'}", highlight=False)


@hosts_app.command("drain")
def drain(ctx: typer.Context, host: HostId) -> None:
    """Cordon HOST, then drain and stop its instances one by one."""
    raise typer.Exit(asyncio.run(_drain(ctx, host)))


async def _drain(ctx: typer.Context, host: str) -> int:
    console = Console()
    async with _client(ctx) as api:
        await api.cordon(host, True)
        target = await api.host(host)
        console.print(f"{host}: cordoned; {len(target.instances)} instances to stop")
        failed = 0
        for instance_id, service in sorted(target.instances.items()):
            order = Order(
                order_id=_order_id(f"drain-{instance_id}"[:40]),
                host_id=host,
                action=OrderAction.STOP,
                service=service,
                instance_id=instance_id,
            )
            stored, _ = await api.add_order(order)
            done = await _follow(api, stored, console, FOLLOW_TIMEOUT_S)
            failed += done.state is not OrderState.STOPPED
    console.print(f"{host}: drained" + (f", {failed} stops failed" if failed else ""))
    return 1 if failed else 0
