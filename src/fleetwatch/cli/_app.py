"""The Typer application: one module per command, imported only when its command runs.

Each command module pulls in what its command needs (the agent, the gateway, the registry
server, the openai SDK for the demo). Importing them all took about 2 s of CPU on every
start, and ``fleetwatch agent`` is started once per instance by every rollout, so the group
below imports a command's module when that command is asked for (``--help`` lists them all,
and imports them all).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from difflib import get_close_matches
from functools import cache
from importlib.metadata import entry_points
from typing import Annotated

import typer
from typer import _click as click  # vendored since Typer 0.29: the classes Typer builds
from typer.core import TyperGroup

from fleetwatch.cli._logsetup import global_options
from fleetwatch.errors import MissingExtraError

#: Command name -> (module, function, extra click context settings).
COMMANDS: dict[str, tuple[str, str, dict[str, bool]]] = {
    "agent": ("fleetwatch.cli._agent", "agent_command", {"allow_interspersed_args": False}),
    "check": ("fleetwatch.cli._check", "check_command", {}),
    "gateway": ("fleetwatch.cli._gateway", "gateway_command", {}),
    "host": ("fleetwatch.cli._host", "host_command", {}),
    "hosts": ("fleetwatch.cli._hosts", "hosts_app", {}),
    "rollout": ("fleetwatch.cli._rollout", "rollout_app", {}),
    "serve": ("fleetwatch.cli._registry_node", "serve_command", {}),
    "status": ("fleetwatch.cli._status", "status_command", {}),
}


#: Where other installed distributions add commands: ``name = "module:function"``. The
#: dev-only ``fleetwatch-testing`` adds ``demo`` and ``demo-llm`` this way, so the shipped
#: wheel holds no demo, and a checkout with ``make setup`` done still has ``fleetwatch demo``.
PLUGIN_GROUP = "fleetwatch.commands"


@cache
def all_commands() -> dict[str, tuple[str, str, dict[str, bool]]]:
    """The built-in :data:`COMMANDS`, then those installed distributions add (read once)."""
    found = dict(COMMANDS)
    for point in entry_points(group=PLUGIN_GROUP):
        module, _, function = point.value.partition(":")
        found.setdefault(point.name, (module.strip(), function.strip(), {}))
    return found


def command(name: str) -> click.Command:
    """The click command ``name``, built from its module (imported now)."""
    module, function, settings = all_commands()[name]
    try:
        target = getattr(importlib.import_module(module), function)
    except MissingExtraError as missing:
        target, settings = _needs_extra(missing), {"ignore_unknown_options": True}
    if isinstance(target, typer.Typer):  # a command with subcommands
        group = typer.main.get_command(target)
        group.name = name
        return group
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    single.command(name, context_settings=settings)(target)
    built = typer.main.get_command(single)
    built.name = name
    return built


def _needs_extra(missing: MissingExtraError) -> Callable[..., None]:
    """A command whose optional dependency is not installed: still listed (``--help`` works
    in a core install), and raising the error that names the extra when it is run."""

    def refuse(
        args: Annotated[list[str] | None, typer.Argument(hidden=True)] = None,
    ) -> None:
        raise missing

    refuse.__doc__ = (
        f"(needs the {missing.extra!r} extra: pip install 'fleetwatch[{missing.extra}]')"
    )
    return refuse


class LazyCommands(TyperGroup):
    """The top-level group: commands come from :func:`all_commands`, built on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        del ctx
        return list(all_commands())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        del ctx
        if cmd_name not in all_commands():
            return None
        if cmd_name not in self.commands:
            self.commands[cmd_name] = command(cmd_name)
        return self.commands[cmd_name]

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """As Typer's, with its "Did you mean" hint drawn from every command, loaded or not."""
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.UsageError as error:
            matches = get_close_matches(args[0], all_commands()) if args else []
            if matches and "Did you mean" not in error.message:
                hint = ", ".join(repr(match) for match in matches)
                error.message = f"{error.message.rstrip('.')}. Did you mean {hint}?"
            raise


app = typer.Typer(
    name="fleetwatch",
    cls=LazyCommands,
    help="Discover, health-check and replace LLM inference servers without dropping requests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.callback()(global_options)
