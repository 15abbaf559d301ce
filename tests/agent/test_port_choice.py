"""The upstream's port is chosen by the agent that starts the server, and a port taken in the
meantime is detected and retried."""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Iterator

import httpx
import pytest

from fleetwatch.agent import AgentSettings, start_on_free_port
from fleetwatch.agent._port import pick_port, port_held
from fleetwatch.cli import main
from fleetwatch.errors import FleetwatchError
from fleetwatch.llm._check import LlmServerSettings

BACKEND = [sys.executable, "-m", "fleetwatch_testing.openai_backend", "--port", "{port}"]


def settings(command: list[str]) -> AgentSettings:
    return AgentSettings(
        service="llm",
        llm=LlmServerSettings(base_url="http://127.0.0.1:{port}", kind="openai"),
        command=tuple(command),
    )


@pytest.fixture
def squatter() -> Iterator[socket.socket]:
    """Another process's listener, holding the port the agent will choose first."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held


async def test_a_port_taken_before_the_server_binds_is_retried_on_another(
    squatter: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    """The first port chosen is already held: the real server exits on address-in-use, the
    agent logs it and starts the server on a new port, which then answers."""
    taken = squatter.getsockname()[1]
    chosen: list[int] = []

    def choose(host: str) -> int:
        chosen.append(taken if not chosen else pick_port(host))
        return chosen[-1]

    with caplog.at_level(logging.WARNING, logger="fleetwatch.agent"):
        concrete, child = await start_on_free_port(settings(BACKEND), choose=choose)
    try:
        assert len(chosen) == 2
        assert chosen[1] != taken
        assert concrete.llm.base_url == f"http://127.0.0.1:{chosen[1]}"
        assert concrete.command[-1] == str(chosen[1])
        assert child.running
        async with httpx.AsyncClient(timeout=5) as client:
            reply = await client.get(f"{concrete.llm.base_url}/v1/models")
        assert reply.status_code == 200
        assert any(f"agent.port_taken 127.0.0.1:{taken}" in r.getMessage() for r in caplog.records)
    finally:
        await child.stop(timeout=5)


async def test_a_server_that_fails_for_another_reason_is_not_started_again() -> None:
    """A server that exits while its port is free did not lose a race: it is handed back,
    dead, after one start, for the agent's usual handling of a dead child."""
    calls: list[int] = []

    def choose(host: str) -> int:
        calls.append(pick_port(host))
        return calls[-1]

    command = [sys.executable, "-c", "import sys; sys.exit(3)", "{port}"]
    _, child = await start_on_free_port(settings(command), choose=choose)
    assert len(calls) == 1
    assert child.exited is not None
    assert await child.exited == 3
    assert not port_held("127.0.0.1", calls[0])


async def test_a_port_lost_every_time_gives_up_with_a_clear_error(
    squatter: socket.socket,
) -> None:
    """A port that is taken at every try ends, after the attempts, in an error saying so."""
    taken = squatter.getsockname()[1]
    with pytest.raises(FleetwatchError, match="lost its port to another process 2 times"):
        await start_on_free_port(settings(BACKEND), attempts=2, choose=lambda _host: taken)


def test_port_in_the_upstream_but_not_the_command_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--upstream`` with ``{port}`` and a command without it is a configuration error that
    says the server must be told the port."""
    code = main(
        [
            "agent", "--service", "llm", "--upstream", "http://127.0.0.1:{port}",
            "--", sys.executable, "-c", "pass",
        ]
    )  # fmt: skip
    assert code != 0
    assert "the server must be told it" in capsys.readouterr().err
