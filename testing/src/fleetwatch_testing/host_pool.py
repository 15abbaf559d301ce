"""Many simulated hosts in one process: how the fleet benchmark fits 100 hosts x 4 on 2 cores.

One pool process runs the daemons of several hosts, each a real :class:`HostDaemon` with its
own ``host.toml``: its own id, loopback address, token, state directory and order feed. It
also runs the agents of their instances (the real :class:`Agent`, from the real command line)
and a fast OpenAI-compatible backend under each, on its host's address.

The daemons still launch one process per instance, in a session of its own, and watch,
signal and adopt it as always: a small stand-in (``python -S``, about 9 MB) that hands its
agent command line to the pool over a unix socket and lives as long as that agent does.
SIGTERM to the stand-in drains the agent (it answers with the agent's exit code and exits);
a stand-in killed outright takes its agent with it. What is shared is the interpreter under
the agents, which is what 400 agent processes could not afford (about 55 MB each). Unlike a
real host, a pool that dies takes its hosts' agents with it.

Run: ``python -m fleetwatch_testing.host_pool --socket PATH CONFIG...`` (each host's token in
the variable its config names).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from fleetwatch.agent import Agent
from fleetwatch.agent._agent import StopReason
from fleetwatch.cli._agent import agent_command, agent_settings
from fleetwatch.cli._host import host_settings
from fleetwatch.cli._logsetup import setup_logs
from fleetwatch.hosts._daemon import HostDaemon
from fleetwatch.lifecycle import AppServer
from fleetwatch_testing.openai_backend import MODES, BackendState, openai_app

log = logging.getLogger("fleetwatch_testing.host_pool")

#: The stand-in each daemon launches for an agent: argv[1] is the pool's socket, the rest is
#: the agent's command line. Only the standard library, and no site (-S): it must stay small.
STAND_IN = r"""
import json, os, signal, socket, sys
link = socket.socket(socket.AF_UNIX)
link.connect(sys.argv[1])
hello = {"argv": sys.argv[2:], "token": os.environ.get("FLEETWATCH_TOKEN")}
link.sendall(json.dumps(hello).encode() + b"\n")
def drain(signum, frame):
    link.sendall(b"TERM\n")
signal.signal(signal.SIGTERM, drain)
signal.signal(signal.SIGINT, drain)
said = b""
while chunk := link.recv(64):
    said += chunk
sys.exit(int(said.strip() or b"1"))
"""


def stand_in_command(socket_path: Path) -> tuple[str, ...]:
    """What a pooled host's daemon runs in place of ``fleetwatch agent``."""
    return (sys.executable, "-S", "-c", STAND_IN, str(socket_path))


def _backend_state(command: Sequence[str]) -> tuple[str, BackendState]:
    """The fast backend's address and state from the profile's command line (the same
    options as ``python -m fleetwatch_testing.openai_backend``)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port")
    parser.add_argument("--model", default="test-model")
    parser.add_argument("--tokens", type=int, default=4)
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--mode", choices=MODES, default="ok")
    args, _ = parser.parse_known_args(list(command))
    state = BackendState(
        model=args.model, tokens=args.tokens, token_delay=args.token_delay, mode=args.mode
    )
    return str(args.host), state


class AgentPool:
    """Runs the agent each stand-in connects with, until it ends or its stand-in goes."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        # ``fleetwatch agent``'s own option parser reads each stand-in's command line.
        app = typer.Typer()
        app.command(context_settings={"allow_interspersed_args": False})(agent_command)
        self._cli = typer.main.get_command(app)
        self.running = 0

    async def serve(self) -> None:
        server = await asyncio.start_unix_server(self._one, path=str(self.socket_path))
        async with server:
            await server.serve_forever()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        code = 1
        try:
            hello = json.loads(await reader.readline())
            code = await self._run(hello, reader)
        except Exception:  # one instance's failure is its own: the pool serves on
            log.exception("pool.agent_failed")
        finally:
            with contextlib.suppress(OSError):
                writer.write(f"{code}\n".encode())
                await writer.drain()
                writer.close()

    async def _run(self, hello: Mapping[str, Any], reader: asyncio.StreamReader) -> int:
        context = self._cli.make_context("agent", list(hello["argv"]))
        settings = replace(agent_settings(context.params), token=hello.get("token"))
        address, state = _backend_state(settings.command)
        backend = AppServer(openai_app(state), host=address, port=0)
        await backend.start()
        llm = replace(settings.llm, base_url=f"http://{address}:{backend.port}")
        agent = Agent(replace(settings, llm=llm, command=()))
        run = asyncio.create_task(agent.run(handle_signals=False), name="pool.agent")
        follow = asyncio.create_task(self._follow(reader, agent, run), name="pool.stand-in")
        self.running += 1
        try:
            return await run
        except asyncio.CancelledError:
            return 137  # its stand-in was killed: as SIGKILL would, the agent just ends
        finally:
            self.running -= 1
            follow.cancel()
            await backend.aclose()

    @staticmethod
    async def _follow(reader: asyncio.StreamReader, agent: Agent, run: asyncio.Task[int]) -> None:
        """A TERM line drains the agent; the stand-in's end (EOF) ends it at once."""
        while line := await reader.readline():
            if line.strip() == b"TERM":
                agent.request_stop(StopReason.SIGNAL, "SIGTERM")
        run.cancel()


async def run_pool(configs: Sequence[Path], socket_path: Path) -> int:
    """The hosts' daemons and the pool of their agents, until SIGTERM; 70 if a daemon failed."""
    command = stand_in_command(socket_path)
    daemons = [
        HostDaemon(replace(host_settings(path, os.environ), agent_command=command))
        for path in configs
    ]
    pool = AgentPool(socket_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(d.run(handle_signals=False), name=d.settings.host_id)
             for d in daemons]  # fmt: skip
    serving = asyncio.create_task(pool.serve(), name="pool")
    stopping = asyncio.create_task(stop.wait(), name="stop")
    done, _ = await asyncio.wait([*tasks, serving, stopping], return_when="FIRST_COMPLETED")
    failed = [t for t in done if t is not stopping]
    for task in failed:  # a daemon or the pool ended by itself: say so, and end the rest
        log.error("pool.ended %s: %r", task.get_name(), task.exception() or task.result())
    for daemon in daemons:
        daemon.request_stop()
    codes = await asyncio.gather(*tasks, return_exceptions=True)
    serving.cancel()
    stopping.cancel()
    await asyncio.gather(serving, stopping, return_exceptions=True)
    return 70 if failed or any(code != 0 for code in codes) else 0


def lower_priority(nice: int) -> None:
    """Run this process, and what it starts, ``nice`` steps below normal priority. Where the
    kernel groups processes by session (autogroup: each pool is a session of its own), a
    process's nice value counts only inside its group and every busy group gets an equal
    share, so the group is lowered too."""
    os.nice(nice)
    with contextlib.suppress(OSError):
        Path("/proc/self/autogroup").write_text(f"{nice}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument(
        "--nice", type=int, default=0, help="lower this process's priority by this much"
    )
    parser.add_argument("configs", type=Path, nargs="+")
    args = parser.parse_args()
    if args.nice:
        lower_priority(args.nice)
    setup_logs("info")
    # A line per HTTP request, from 400 agents' heartbeats and checks, would cost the pool
    # more CPU than the agents do: their own log lines stay.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    sys.exit(asyncio.run(run_pool(args.configs, args.socket)))


if __name__ == "__main__":
    main()
