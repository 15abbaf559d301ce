"""The Typer application: one module per command, wired here."""

from __future__ import annotations

import typer

from fleetwatch.cli.agent import agent_command
from fleetwatch.cli.check import check_command
from fleetwatch.cli.demo import demo_command
from fleetwatch.cli.demo_llm import demo_llm_command
from fleetwatch.cli.gateway import gateway_command
from fleetwatch.cli.logsetup import global_options
from fleetwatch.cli.rollout import rollout_command
from fleetwatch.cli.serve import serve_command
from fleetwatch.cli.status import status_command

app = typer.Typer(
    name="fleetwatch",
    help="Discover, health-check and replace LLM inference servers without dropping requests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.callback()(global_options)
app.command("agent", context_settings={"allow_interspersed_args": False})(agent_command)
app.command("check")(check_command)
app.command("demo")(demo_command)
app.command("demo-llm")(demo_llm_command)
app.command("gateway")(gateway_command)
app.command("rollout")(rollout_command)
app.command("serve")(serve_command)
app.command("status")(status_command)
