"""The command line as a whole: every command listed, each module loaded only when needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fleetwatch.cli import EXIT_USAGE, main
from fleetwatch.cli._app import COMMANDS, all_commands


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    """``fleetwatch --help`` names the nine built-in commands and the two the dev-only
    fleetwatch-testing distribution adds (``demo``, ``demo-llm``), and exits 0."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = [name for name in all_commands() if f" {name} " in out]
    assert listed == list(all_commands())
    assert sorted(COMMANDS) == [
        "agent", "check", "gateway", "host", "hosts", "rollout", "serve", "status",
    ]  # fmt: skip
    assert set(listed) - set(COMMANDS) == {"demo", "demo-llm"}


def test_a_mistyped_command_exits_64_and_suggests_the_right_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An unknown command is a usage error (64) whose message offers the closest command."""
    assert main(["agnet"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "No such command 'agnet'" in err
    assert "Did you mean 'agent'?" in err


def test_a_command_imports_only_its_own_module() -> None:
    """``fleetwatch agent --help`` (a fresh interpreter) loads neither the gateway, the
    registry server, the demo nor the openai SDK: every agent a rollout starts saves that."""
    probe = (
        "import sys\n"
        "from fleetwatch.cli import main\n"
        "code = main(['agent', '--help'])\n"
        "heavy = ['openai', 'fleetwatch.gateway', 'fleetwatch.registry_api._app',\n"
        "         'fleetwatch_testing.demo']\n"
        "print(code, [m for m in heavy if m in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines()[-1] == "0 []"
