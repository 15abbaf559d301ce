"""The gateway in front of real llama.cpp servers, driven by the official ``openai`` SDK."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import httpx
import openai
import pytest

from fleetwatch.discovery import RegistryClient
from fleetwatch.llm._prometheus import parse_metrics
from fleetwatch_testing import free_port, spawned
from fleetwatch_testing.llama import LlamaServer
from tests._support.gateways import register, routed
from tests._support.registry_node import TOKEN, RunningRegistry
from tests._support.waiting import poll_until

# Needs the machine to itself: llama.cpp servers paused and killed behind the gateway.
# make test runs it in its one-at-a-time phase.
pytestmark = pytest.mark.serial

MODEL = "SmolLM2-135M-Instruct"


async def test_openai_sdk_through_the_gateway_streaming_and_not(
    api: RegistryClient, gateways: Any, llama_server: LlamaServer
) -> None:
    """The SDK's chat completion, streamed and not, and its model list, via the gateway."""
    await register(api, "smol", llama_server.port, model=MODEL)
    gateway = await gateways()
    await routed(gateway, 1)
    client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0)
    async with client:
        reply = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Say hi."}], max_tokens=8
        )
        chunks = [
            chunk
            async for chunk in await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Say hi."}],
                max_tokens=8,
                stream=True,
            )
        ]
        models = await client.models.list()
    assert reply.choices[0].message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens <= 8
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert [m.id for m in models.data] == [MODEL]


async def test_llama_cpp_cached_tokens_reach_the_metrics(
    api: RegistryClient, gateways: Any, llama_server: LlamaServer
) -> None:
    """A conversation's second turn is served mostly from llama.cpp's prompt cache, and the
    gateway counts those cached tokens from the stream's usage (which the client never asked
    for, and does not see)."""
    await register(api, "smol", llama_server.port, model=MODEL)
    gateway = await gateways()
    await routed(gateway, 1)
    history: list[dict[str, str]] = [
        {"role": "system", "content": "You answer in one short sentence. " * 12},
        {"role": "user", "content": "Name a colour."},
    ]
    client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0)
    async with client:
        for _ in range(2):
            stream = await client.chat.completions.create(
                model=MODEL, messages=history, max_tokens=4, stream=True, temperature=0
            )
            chunks = [chunk async for chunk in stream]
            assert all(chunk.usage is None for chunk in chunks)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            history += [
                {"role": "assistant", "content": text},
                {"role": "user", "content": "Another."},
            ]
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        families = parse_metrics((await http.get("/metrics")).text)
    tokens = {
        sample.labels["kind"]: sample.value
        for sample in families.samples["fleetwatch_gateway_tokens_total"]
    }
    assert tokens["prompt"] > 200
    assert tokens["cached"] > 100  # the second turn's shared history
    assert tokens["completion"] >= 2


async def test_a_disconnecting_client_frees_the_llama_server_slot(
    api: RegistryClient, gateways: Any, own_llama: LlamaServer
) -> None:
    """A streamed generation abandoned by its client stops early on the server: no busy slot."""
    await register(api, "smol", own_llama.port, model=MODEL)
    gateway = await gateways()
    await routed(gateway, 1)
    client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0)
    async with client:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Write a very long story."}],
            max_tokens=400,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        async for _ in stream:
            break
        await stream.close()

    async def busy_slots() -> int:
        async with httpx.AsyncClient() as http:
            slots = (await http.get(f"{own_llama.url}/slots")).json()
        return sum(1 for slot in slots if slot["is_processing"])

    await poll_until(busy_slots, 0, within=3)
    # The server's own count (it ran no other generation): the generation did start, and was
    # cut short well before the 400 tokens asked for (about 10 s of work on one CPU thread).
    async with httpx.AsyncClient() as http:
        page = parse_metrics((await http.get(f"{own_llama.url}/metrics")).text)
    predicted = page.total("llamacpp:tokens_predicted_total")
    assert predicted is not None
    assert 1 <= predicted < 200, predicted


async def test_gateway_command_serves_until_sigterm(
    registry: RunningRegistry, api: RegistryClient, llama_server: LlamaServer
) -> None:
    """``fleetwatch gateway``: a real process routes an SDK request, then stops on SIGTERM."""
    await register(api, "smol", llama_server.port, model=MODEL)
    port = free_port()
    async with spawned(
        sys.executable, "-m", "fleetwatch", "gateway",
        "--registry", registry.url, "--service", "llm", "--port", str(port), "--token", TOKEN,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    ) as process:  # fmt: skip
        client = openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0
        )
        async with client:

            async def answered() -> bool:
                try:
                    await client.models.list()
                except openai.APIConnectionError:
                    return False
                return True

            await poll_until(answered, True, within=20)
            reply = await client.completions.create(model=MODEL, prompt="Hello", max_tokens=4)
        assert reply.choices[0].text
        assert reply.usage is not None
        assert 1 <= reply.usage.completion_tokens <= 4
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            output, _ = await process.communicate()
    assert process.returncode == 0
    assert b"fleetwatch gateway" in output
