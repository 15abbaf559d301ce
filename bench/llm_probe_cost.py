"""Tokens spent on generation probes per instance-hour: fleetwatch's economy vs probe-per-check.

Runs fleetwatch's real LLM checks in the real HealthScheduler, with default settings, for one
hour of *virtual* time (bench/_virtual_clock.py: waits cost nothing), twice over: an idle
server, and a server with real traffic (a request every 2 s). The server is in-loop and
replays the llama.cpp replies recorded in tests/llm/fixtures/llamacpp (its /health, /slots,
and its streamed 4-token chat completion with usage 38 + 4 tokens); its /metrics counter of
generated tokens rises with traffic and with probes, as the real one does.

Beside it, the same schedule with a probe-per-check design: the generation check calls the
model on every execution (what LiteLLM's ``/health`` does per model, per request to it).
Every figure is counted from what ran, not computed.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from _common import emit, parser, progress
from _virtual_clock import run_virtual
from fleetwatch.health import HealthScheduler
from fleetwatch.llm._check import LlmServer, LlmServerSettings
from fleetwatch.llm._economy import DEFAULT_HOURLY_BUDGET, ProbeGovernor

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "llm" / "fixtures" / "llamacpp"
TRAFFIC_EVERY_S = 2.0
TRAFFIC_TOKENS = 100


class ReplayedLlamaServer:
    """llama-server's recorded replies, with a live generated-token counter."""

    def __init__(self) -> None:
        self.stream = (FIXTURES / "chat_stream.txt").read_text()
        usage = next(
            json.loads(line[5:])["usage"]
            for line in self.stream.splitlines()
            if line.startswith("data:") and '"usage"' in line
        )
        self.probe_completion = int(usage["completion_tokens"])
        self.health = (FIXTURES / "health.json").read_text()
        self.slots = (FIXTURES / "slots.json").read_text()
        self.tokens_predicted = 0
        self.chat_calls = 0

    def metrics(self) -> str:
        return (
            "# TYPE llamacpp:tokens_predicted_total counter\n"
            f"llamacpp:tokens_predicted_total {self.tokens_predicted}\n"
            "# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 0\n"
            "# TYPE llamacpp:requests_deferred gauge\nllamacpp:requests_deferred 0\n"
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/health":
            return httpx.Response(200, text=self.health)
        if path == "/metrics":
            return httpx.Response(200, text=self.metrics())
        if path == "/slots":
            return httpx.Response(200, text=self.slots)
        if path == "/v1/chat/completions":
            self.chat_calls += 1
            self.tokens_predicted += self.probe_completion
            return httpx.Response(
                200, text=self.stream, headers={"content-type": "text/event-stream"}
            )
        return httpx.Response(404)


async def one_hour(*, naive: bool, traffic: bool, seconds: float) -> dict[str, float]:
    """Run the checks for ``seconds`` of virtual time; what the probes spent."""
    loop = asyncio.get_running_loop()
    replay = ReplayedLlamaServer()
    client = httpx.AsyncClient(transport=httpx.MockTransport(replay.handle))
    server = LlmServer(
        LlmServerSettings(base_url="http://llm.local", kind="llamacpp"),
        client=client,
        clock=loop.time,
    )
    if naive:  # probe on every execution of the generation check, whatever happens
        server.governor = ProbeGovernor(
            min_interval=0, evidence_window=0, hourly_budget=10**12, clock=loop.time
        )

    async def traffic_source() -> None:
        while True:
            await asyncio.sleep(TRAFFIC_EVERY_S)
            replay.tokens_predicted += TRAFFIC_TOKENS

    feeder = asyncio.create_task(traffic_source()) if traffic else None
    async with HealthScheduler(server.checks()):
        await asyncio.sleep(seconds)
    if feeder is not None:
        feeder.cancel()
    await client.aclose()
    hours = seconds / 3600
    governor = server.governor
    return {
        "tokens_per_instance_hour": round(governor.tokens_spent_total / hours, 1),
        "probes_per_hour": round(governor.probes_run / hours, 1),
        "probe_calls_seen_by_server": replay.chat_calls,
        "skipped": governor.probes_skipped,
    }


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    seconds = 600.0 if args.quick else 3600.0
    runs: dict[str, dict[str, float]] = {}
    for naive in (False, True):
        for traffic in (False, True):
            design = "probe-per-check" if naive else "fleetwatch"
            name = f"{design}, {'traffic' if traffic else 'idle'}"
            progress(f"{name}: {seconds:.0f} s of virtual time")
            runs[name] = run_virtual(one_hour(naive=naive, traffic=traffic, seconds=seconds))
            progress(f"  {runs[name]}")
    ours_idle = runs["fleetwatch, idle"]["tokens_per_instance_hour"]
    ours_busy = runs["fleetwatch, traffic"]["tokens_per_instance_hour"]
    naive_idle = runs["probe-per-check, idle"]["tokens_per_instance_hour"]
    emit(
        "llm_probe_cost",
        {
            "mode": "quick" if args.quick else "full",
            "virtual_seconds": seconds,
            "runs": runs,
            "headline": {
                "fleetwatch tokens/instance-hour, idle": ours_idle,
                "fleetwatch tokens/instance-hour, with traffic": ours_busy,
                "probe-per-check tokens/instance-hour (same schedule)": naive_idle,
            },
            "comparison": {
                "probe-per-check / fleetwatch (idle)": round(naive_idle / ours_idle, 1)
                if ours_idle
                else None,
            },
            "targets": {
                "no probe tokens while traffic flows (after the first)": ours_busy
                <= 42 / (seconds / 3600),
                "idle spend within the default hourly budget": ours_idle <= DEFAULT_HOURLY_BUDGET,
            },
        },
    )


if __name__ == "__main__":
    main()
