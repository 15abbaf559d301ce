"""The Typer application: one module per command, imported only when its command runs.

Each command module pulls in what its command needs (the agent, the gateway, the registry
server, the openai SDK for the demo). Importing them all took about 2 s of CPU on every
start, and ``fleetwatch agent`` is started once per instance by every rollout, so the group
below imports a command's module when that command is asked for (``--help`` lists them all,
and imports them all).
"""

from __future__ import annotations

import importlib
from difflib import get_close_matches

import typer
from typer import _click as click  # vendored since Typer 0.29: the classes Typer builds
from typer.core import TyperGroup

from fleetwatch.cli.logsetup import global_options

#: Command name -> (module, function, extra click context settings).
COMMANDS: dict[str, tuple[str, str, dict[str, bool]]] = {
    "agent": ("fleetwatch.cli.agent", "agent_command", {"allow_interspersed_args": False}),
    "check": ("fleetwatch.cli.check", "check_command", {}),
    "demo": ("fleetwatch.cli.demo", "demo_command", {}),
    "demo-llm": ("fleetwatch.cli.demo_llm", "demo_llm_command", {}),
    "gateway": ("fleetwatch.cli.gateway", "gateway_command", {}),
    "rollout": ("fleetwatch.cli.rollout", "rollout_command", {}),
    "serve": ("fleetwatch.cli.serve", "serve_command", {}),
    "status": ("fleetwatch.cli.status", "status_command", {}),
}


def command(name: str) -> click.Command:
    """The click command ``name``, built from its module (imported now)."""
    module, function, settings = COMMANDS[name]
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    single.command(name, context_settings=settings)(
        getattr(importlib.import_module(module), function)
    )
    built = typer.main.get_command(single)
    built.name = name
    return built


class LazyCommands(TyperGroup):
    """The top-level group: commands come from :data:`COMMANDS`, built on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        del ctx
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        del ctx
        if cmd_name not in COMMANDS:
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
            matches = get_close_matches(args[0], COMMANDS) if args else []
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
