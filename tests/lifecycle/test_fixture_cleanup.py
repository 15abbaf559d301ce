"""A test that fails while its processes run leaves nothing behind for the tests after it.

The two tests run in this order. The first fails on purpose while a real agent and the real
llama-server it launched are running, with the agent's output piped and never read (as the
CLI tests do). The second proves that garbage collection then finds no unclosed pipe
transport: before ``spawned``, such a leftover raised a ``ResourceWarning`` inside whichever
unrelated test happened to run the collector.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import warnings

import pytest

from fleetwatch_testing import free_port, spawned
from fleetwatch_testing.llama import llama_server_argv
from fleetwatch_testing.ports import port_open
from tests._support.registry_node import TOKEN, RunningRegistry
from tests._support.waiting import poll_until


class ForcedFailure(Exception):
    """What the first test raises while everything is running."""


async def test_a_failing_llama_test_ends_its_agent_and_server(registry: RunningRegistry) -> None:
    """The test body fails mid-run: the agent, the llama-server it launched (which shares the
    agent's pipe) and the pipe itself are all gone when the failure reaches pytest."""
    port = free_port()
    started: list[asyncio.subprocess.Process] = []

    async def fail_while_running() -> None:
        async with spawned(
            sys.executable, "-m", "fleetwatch", "agent",
            "--registry", registry.url, "--service", "smol", "--token", TOKEN,
            "--upstream", f"http://127.0.0.1:{port}", "--kind", "llamacpp",
            "--", *llama_server_argv(port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        ) as agent:  # fmt: skip
            started.append(agent)
            await poll_until(
                lambda: asyncio.to_thread(port_open, "127.0.0.1", port), True, within=60
            )
            raise ForcedFailure

    with pytest.raises(ForcedFailure):
        await fail_while_running()
    (agent,) = started
    assert agent.returncode is not None
    assert not port_open("127.0.0.1", port)  # the grandchild llama-server is gone too
    assert agent.stdout is not None
    assert agent.stdout.at_eof()  # read to its end: the pipe transport has closed


def test_no_resource_warning_reaches_the_next_test() -> None:
    """Collecting garbage after the failed test finds no unclosed transport or pipe."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []
