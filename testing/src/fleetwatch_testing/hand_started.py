"""Instances started by hand: a server under a ``fleetwatch agent``, detached, as a user
starts one before any host daemon runs (the tests' and the demo's first fleet).

The agent process starts in its own session, so it outlives whoever started it; its output
goes to a log file. The agent registers the instance, checks it, and drains and stops it when
an operator (or a rollout) sets it to ``draining``.
"""

from __future__ import annotations

import os
import secrets
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from fleetwatch.agent._port import PORT_PLACEHOLDER
from fleetwatch.hosts._local import spawn_detached
from fleetwatch.rollout import RolloutSettings


@dataclass(frozen=True, slots=True)
class Launched:
    """An instance started by hand."""

    instance_id: str
    pid: int
    log: Path


def launch(settings: RolloutSettings) -> Launched:
    """Start one instance of ``settings``' service, version and launch command.

    The agent chooses the port (``{port}`` stays in what it is given), on the machine where the
    server runs, and starts the server again on another if it loses the port to another process.
    """
    assert settings.launch is not None
    assert settings.version is not None
    instance_id = f"{settings.service}-{settings.version}-{secrets.token_hex(3)}"[:63]
    command = shlex.split(settings.launch)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    log = settings.log_dir / f"{instance_id}.log"
    agent = [
        sys.executable, "-m", "fleetwatch", "agent",
        "--service", settings.service,
        "--upstream", f"http://127.0.0.1:{PORT_PLACEHOLDER}",
        "--kind", settings.kind,
        "--instance-id", instance_id,
        "--version", settings.version,
    ]  # fmt: skip
    if settings.registry_url:
        agent += ["--registry", settings.registry_url]
    if settings.model:
        agent += ["--model", settings.model]
    agent += [*settings.agent_args, "--", *command]
    env = dict(os.environ)
    if settings.token:
        env["FLEETWATCH_TOKEN"] = settings.token
    pid = spawn_detached(agent, env, log)  # its own session: it outlives whoever started it
    return Launched(instance_id, pid, log)


def alive(pid: int) -> bool:
    """Whether a launched agent still runs (reaping it if it was our child and has exited)."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        waited = 0
    if waited == pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
