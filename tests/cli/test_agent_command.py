"""``fleetwatch agent`` and ``fleetwatch demo-llm`` as a user runs them: real processes."""

from __future__ import annotations

import asyncio
import signal
import sys
from contextlib import AbstractAsyncContextManager

import httpx

from fleetwatch.agent import default_instance_id
from fleetwatch.discovery import RegistryClient
from fleetwatch_testing import free_port, spawned
from fleetwatch_testing.llama import llama_server_argv
from fleetwatch_testing.ports import port_open
from tests._support.registry_node import TOKEN, RunningRegistry
from tests._support.waiting import poll_until


def _spawn(*args: str) -> AbstractAsyncContextManager[asyncio.subprocess.Process]:
    """``fleetwatch ARGS`` as a process, output piped; it and its children reaped on exit."""
    return spawned(
        sys.executable,
        "-m",
        "fleetwatch",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _status(api: RegistryClient, service: str, iid: str) -> str | None:
    _, instances = await api.instances(service)
    mine = [i for i in instances if i.instance_id == iid]
    return mine[0].status.value if mine else None


async def test_agent_launches_registers_and_drains_on_sigterm(
    registry: RunningRegistry, api: RegistryClient
) -> None:
    """With -- COMMAND: registered with version, tags and launch command; SIGTERM drains,
    deregisters, stops the server, exits 0."""
    port = free_port()
    iid = default_instance_id("127.0.0.1", port)
    async with _spawn(
        "agent",
        "--registry", registry.url,
        "--service", "smol",
        "--upstream", f"http://127.0.0.1:{port}",
        "--kind", "llamacpp",
        "--token", TOKEN,
        "--version", "2.0",
        "--tag", "canary",
        "--meta", "team=ml",
        "--propagation-delay", "300ms",
        "--",
        *llama_server_argv(port),
    ) as agent:  # fmt: skip
        await poll_until(lambda: _status(api, "smol", iid), "available", within=30)
        _, (instance,) = await api.instances("smol")
        assert instance.version == "2.0"
        assert instance.tags == {"canary"}
        assert instance.metadata["team"] == "ml"
        assert "llama-server" in instance.metadata["launch_command"]
        assert port_open("127.0.0.1", port)
        agent.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            output, _ = await agent.communicate()
    assert agent.returncode == 0, output.decode()[-2000:]
    assert await _status(api, "smol", iid) is None
    assert not port_open("127.0.0.1", port)  # the server it launched is gone too
    assert b"agent.deregistered" in output


async def test_agent_rejects_an_unknown_kind_naming_the_known_ones() -> None:
    """--kind vlm: exit 64 and the message lists llamacpp, vllm, tgi, ollama, sglang, openai."""
    async with (
        _spawn(
            "agent", "--service", "s", "--upstream", "http://127.0.0.1:9", "--kind", "vlm"
        ) as agent,
        asyncio.timeout(30),
    ):
        output, _ = await agent.communicate()
    text = output.decode()
    assert agent.returncode == 64
    assert "unknown LLM server kind 'vlm'" in text
    for kind in ("llamacpp", "vllm", "tgi", "ollama", "sglang", "openai"):
        assert kind in text


async def test_agent_exits_69_when_the_registry_is_unreachable() -> None:
    """No registry: the agent says where it looked and exits 69 (EX_UNAVAILABLE)."""
    dead = f"http://127.0.0.1:{free_port()}"
    async with (
        _spawn(
            "agent", "--registry", dead, "--service", "s", "--upstream", "http://127.0.0.1:9"
        ) as agent,
        asyncio.timeout(30),
    ):
        output, _ = await agent.communicate()
    assert agent.returncode == 69
    assert dead in output.decode()


async def test_demo_llm_serves_smollm2() -> None:
    """fleetwatch demo-llm --port P: /health ok and a real chat completion; SIGTERM stops it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    async def health() -> int:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{url}/health", timeout=1)).status_code
        except httpx.HTTPError:
            return 0

    async with _spawn("demo-llm", "--port", str(port), "--threads", "1") as server:
        await poll_until(health, 200, within=60)
        async with httpx.AsyncClient(timeout=20) as client:
            reply = await client.post(
                f"{url}/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
            )
        assert reply.status_code == 200
        assert reply.json()["choices"][0]["message"]["content"]
        server.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await server.communicate()
    # demo-llm became llama-server (exec): SIGTERM is its own clean shutdown.
    assert server.returncode == 0
    assert not port_open("127.0.0.1", port)


def test_default_instance_id_is_stable_and_url_safe() -> None:
    """The same host and port give the same id; it fits the registry's name rules."""
    first = default_instance_id("127.0.0.1", 8080)
    assert first == default_instance_id("127.0.0.1", 8080)
    assert first.endswith("-8080")
    assert default_instance_id("10.0.0.7", 8000) == "10.0.0.7-8000"
