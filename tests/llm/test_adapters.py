"""Adapters per server family: loading/ready/dead and load, from real or recorded replies.

llama.cpp runs here for real. vLLM, SGLang, TGI and Ollama cannot (no GPU, no Go toolchain
download, no Docker engine), so their adapters are fed replies recorded from real servers
(tests/llm/fixtures/<kind>/SOURCE.md says where each came from) through httpx.MockTransport.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
import pytest

from fleetwatch.llm._adapters import KINDS, LoadSignals, Phase, adapter_for
from fleetwatch.llm._prometheus import parse_metrics
from fleetwatch_testing.llama import LlamaServer
from tests._support.llm_servers import fixture_text

BASE = "http://llm.test"


def replaying(replies: Mapping[str, tuple[int, str]]) -> httpx.AsyncClient:
    """A client whose server answers each path with a recorded (status, body)."""

    def answer(request: httpx.Request) -> httpx.Response:
        status, body = replies.get(request.url.path, (404, '{"error": "not found"}'))
        return httpx.Response(status, text=body)

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


async def test_llamacpp_loading_then_ready_from_its_recorded_replies() -> None:
    """llama-server's real 503 "Loading model" reads as loading; its 200 as ready."""
    adapter = adapter_for("llamacpp")
    loading = {"/health": (503, fixture_text("llamacpp", "health_loading.json"))}
    async with replaying(loading) as client:
        assert (await adapter.readiness(client, BASE, None, 1.0)).phase is Phase.LOADING
    ready = {"/health": (200, fixture_text("llamacpp", "health.json"))}
    async with replaying(ready) as client:
        assert (await adapter.readiness(client, BASE, None, 1.0)).phase is Phase.READY
    broken = {"/health": (500, '{"error": {"message": "internal"}}')}
    async with replaying(broken) as client:
        reading = await adapter.readiness(client, BASE, None, 1.0)
    assert reading.phase is Phase.DEAD
    assert "500" in reading.detail


async def test_llamacpp_live_server_is_ready_with_its_load(llama_server: LlamaServer) -> None:
    """Against the real server: ready, requests counts read, busy slots from /slots."""
    adapter = adapter_for("llamacpp")
    async with httpx.AsyncClient() as client:
        reading = await adapter.readiness(client, llama_server.url, None, 2.0)
        metrics = await client.get(f"{llama_server.url}/metrics")
        slots = await adapter.slots(client, llama_server.url, 2.0)
    assert reading.phase is Phase.READY
    load = adapter.load(parse_metrics(metrics.text))
    assert load.running == 0
    assert load.waiting == 0
    assert load.generated_tokens_total is not None
    assert slots == (0.0, 2.0)  # the sandbox server runs two slots, none busy


def test_vllm_load_reads_the_older_kv_name_as_a_fraction() -> None:
    """A recorded vLLM page: waiting/running, gpu_cache_usage_perc as KV use, token counter."""
    load = adapter_for("vllm").load(parse_metrics(fixture_text("vllm-v0", "metrics.txt")))
    assert load.waiting == 0
    assert load.running == 0
    assert load.kv_cache_usage == 0
    assert load.generated_tokens_total == 955


def test_vllm_load_reads_the_current_kv_name_from_a_recorded_page() -> None:
    """vLLM 0.22 (recorded lines): kv_cache_usage_perc and the engine/model labels are read."""
    load = adapter_for("vllm").load(parse_metrics(fixture_text("vllm", "metrics_v022_excerpt.txt")))
    assert (load.waiting, load.running, load.kv_cache_usage) == (0.0, 0.0, 0.0)
    assert load.generated_tokens_total is None  # not in the excerpt: unknown, not zero


def test_vllm_load_prefers_the_current_kv_name() -> None:
    """When both KV series are present, ``kv_cache_usage_perc`` (the current name) wins."""
    page = parse_metrics(
        'vllm:kv_cache_usage_perc{engine="0"} 0.25\nvllm:gpu_cache_usage_perc{engine="0"} 0.9\n'
    )
    assert adapter_for("vllm").load(page).kv_cache_usage == 0.25


def test_sglang_load_from_a_recorded_page() -> None:
    """SGLang's documented production page: queue, running, token usage, generated tokens."""
    load = adapter_for("sglang").load(parse_metrics(fixture_text("sglang", "metrics.txt")))
    assert load == LoadSignals(
        waiting=2826.0, running=162.0, kv_cache_usage=0.28, generated_tokens_total=7.557572e06
    )
    assert load.in_flight == 2826.0 + 162.0


async def test_vllm_readiness_needs_its_engine_and_its_model() -> None:
    """vLLM: /health 503 is a dead engine; 200 without the model listed is still loading."""
    adapter = adapter_for("vllm")
    models = fixture_text("vllm-v0", "models.json")
    async with replaying({"/health": (503, ""), "/v1/models": (200, models)}) as client:
        assert (await adapter.readiness(client, BASE, None, 1.0)).phase is Phase.DEAD
    async with replaying({"/health": (200, ""), "/v1/models": (200, models)}) as client:
        served = await adapter.readiness(client, BASE, "Qwen/Qwen2.5-Coder-1.5B-Instruct", 1.0)
        other = await adapter.readiness(client, BASE, "meta-llama/Llama-3-8B", 1.0)
    assert served.phase is Phase.READY
    assert other.phase is Phase.LOADING
    assert "Qwen/Qwen2.5-Coder-1.5B-Instruct" in other.detail


async def test_ollama_readiness_from_tags_and_ps() -> None:
    """Ollama: loaded model ready; installed but not loaded is ready and cold; absent is dead."""
    adapter = adapter_for("ollama")
    replies = {
        "/api/tags": (200, fixture_text("ollama", "tags.json")),
        "/api/ps": (200, fixture_text("ollama", "ps.json")),
    }
    async with replaying(replies) as client:
        cold = await adapter.readiness(client, BASE, "llama3", 1.0)
        absent = await adapter.readiness(client, BASE, "mistral", 1.0)
    assert cold.phase is Phase.READY
    assert cold.cold
    # mistral is loaded (ps) but was not installed when tags.json was recorded: the
    # documentation examples are independent snapshots, so only installation decides.
    assert absent.phase is Phase.DEAD
    assert "codellama:13b" in absent.detail


async def test_generic_adapter_lists_models() -> None:
    """The generic adapter is ready when /v1/models lists the model, loading when not."""
    adapter = adapter_for("openai")
    body = fixture_text("llamacpp", "v1_models.json")
    async with replaying({"/v1/models": (200, body)}) as client:
        ready = await adapter.readiness(client, BASE, "SmolLM2-135M-Instruct", 1.0)
        missing = await adapter.readiness(client, BASE, "gpt-4o", 1.0)
    assert ready.phase is Phase.READY
    assert missing.phase is Phase.LOADING


def test_tgi_load_from_a_recorded_tgi_compatible_page() -> None:
    """TGI's queue and batch gauges, from a live TGIS-compatible capture (see SOURCE.md)."""
    page = parse_metrics(fixture_text("tgi", "metrics_tgis_excerpt.txt"))
    load = adapter_for("tgi").load(page)
    assert (load.waiting, load.running) == (0.0, 0.0)
    assert load.generated_tokens_total is None  # not in the capture: unknown, not zero


def test_sglang_load_with_the_newer_engine_type_label() -> None:
    """SGLang's newer pages add an engine_type label; the figures are still read."""
    page = parse_metrics(fixture_text("sglang", "metrics_engine_type_excerpt.txt"))
    load = adapter_for("sglang").load(page)
    assert (load.running, load.kv_cache_usage) == (0.0, 0.0)


def test_unknown_kind_names_the_known_ones() -> None:
    """A typo in --kind gets an error listing every supported family."""
    with pytest.raises(ValueError, match="unknown LLM server kind 'vlm'") as caught:
        adapter_for("vlm")
    for kind in KINDS:
        assert kind in str(caught.value)


async def test_non_json_readiness_reply_is_an_error_not_a_crash() -> None:
    """An HTML page where JSON was expected raises a ValueError naming the endpoint."""
    async with replaying({"/api/tags": (200, "<html>proxy error</html>")}) as client:
        with pytest.raises(ValueError, match="GET /api/tags: the reply is not JSON"):
            await adapter_for("ollama").readiness(client, BASE, None, 1.0)
