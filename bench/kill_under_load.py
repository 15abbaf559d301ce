"""SIGKILL one of three backends under load through the gateway: failed client requests, the
time until the killed instance left the gateway's view, and (on real llama.cpp, beside
sglang-router and vllm-router) streams cut or recovered.

Three fast OpenAI-compatible backend processes, registered with a ``fleetwatch serve``
registry (default check settings), behind a ``fleetwatch gateway`` process. Sixteen clients
send chat completions (half streamed, 20 tokens at 5 ms each, so many are in flight at any
moment) in a closed loop; one backend is SIGKILLed mid-run. A request fails when it is not a
200, or a stream ends without ``[DONE]`` or carries an error event. Streams cut mid-way by the
kill are counted apart.

The second part (``_stream_kill``) kills one of three llama.cpp servers under greedy streaming
load, through each router, and counts streams cut and recovered: fleetwatch continues a
broken greedy stream on another server.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

import httpx

from _common import emit, parser, progress
from _fleet import MODEL, fast_fleet, gateway
from _peers import PeerUnavailable, ensure_peers, installed_versions
from _stream_kill import ROUTERS, run_router, table
from fleetwatch_testing import free_port

CLIENTS = 16


async def client(url: str, streaming: bool, stop: asyncio.Event, tally: dict[str, int]) -> None:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 20,
        "stream": streaming,
    }
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while not stop.is_set():
            tally["sent"] += 1
            try:
                if streaming:
                    async with http.stream("POST", "/v1/chat/completions", json=body) as reply:
                        lines = [line async for line in reply.aiter_lines() if line]
                    good = reply.status_code == 200 and lines and lines[-1] == "data: [DONE]"
                    cut = any('"error"' in line for line in lines)
                    if cut:
                        tally["cut_mid_stream"] += 1
                    elif not good:
                        tally["failed"] += 1
                else:
                    reply = await http.post("/v1/chat/completions", json=body)
                    if reply.status_code != 200:
                        tally["failed"] += 1
            except httpx.HTTPError:
                tally["failed"] += 1


async def trial(gateway_url: str, backend_pid: int, seconds: float) -> dict[str, Any]:
    stop = asyncio.Event()
    tally = {"sent": 0, "failed": 0, "cut_mid_stream": 0}
    tasks = [
        asyncio.create_task(client(gateway_url, n % 2 == 0, stop, tally)) for n in range(CLIENTS)
    ]
    await asyncio.sleep(seconds / 3)
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        killed = time.perf_counter()
        signal_process(backend_pid)
        # The gateway is another process: polling its view is the honest wait.
        while (await http.get("/readyz")).json()["routable_instances"] > 2:  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        left_ms = (time.perf_counter() - killed) * 1000
    await asyncio.sleep(seconds * 2 / 3)
    stop.set()
    await asyncio.gather(*tasks)
    return {**tally, "left_gateway_view_ms": round(left_ms, 1)}


def signal_process(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    # SIGTERM (make, a CI timeout) unwinds like Ctrl-C, so every llama-server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    trials, seconds = (2, 3.0) if args.quick else (5, 6.0)
    results = []
    for n in range(trials):
        with fast_fleet(3, tokens=20, token_delay=0.005) as (registry_url, _ports, pids):
            gateway_port = free_port()
            with gateway(gateway_port, registry_url):
                url = f"http://127.0.0.1:{gateway_port}"
                asyncio.run(asyncio.sleep(1.5))
                result = asyncio.run(trial(url, pids[0], seconds))
                results.append(result)
                progress(f"trial {n + 1}/{trials}: {json.dumps(result)}")
    streaming = llama_streaming(2 if args.quick else 5, 9.0 if args.quick else 12.0)
    sent = sum(r["sent"] for r in results)
    failed = sum(r["failed"] for r in results)
    cut = sum(r["cut_mid_stream"] for r in results)
    left = sorted(r["left_gateway_view_ms"] for r in results)
    emit(
        "kill_under_load",
        {
            "mode": "quick" if args.quick else "full",
            "trials": results,
            "requests": sent,
            "failed_requests": failed,
            "streams_cut_mid_way": cut,
            "headline": {
                "requests": sent,
                "failed before any byte (should be 0)": failed,
                "fast backends: streams cut mid-way (they cannot continue a stream)": cut,
                "llama.cpp streaming, streams cut / recovered by router": {
                    r["router"]: f"{r['streams_cut']} / {r['streams_recovered']}"
                    for r in streaming["rows"]
                },
                "left the gateway's view, median / max ms": f"{left[len(left) // 2]} / {left[-1]}",
            },
            "llama_streaming": streaming,
            "table": streaming["table"],
            "targets": {
                "no request failed before its first byte": failed == 0,
                "fleetwatch: no stream cut on llama.cpp": streaming["fleetwatch_streams_cut"] == 0,
            },
        },
    )


def llama_streaming(trials: int, seconds: float) -> dict[str, Any]:
    """The kill on real llama.cpp through fleetwatch and the peers, side by side."""
    installs = ensure_peers(sorted({peer for _, peer in ROUTERS.values() if peer}))
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for name, (_, peer) in ROUTERS.items():
        if peer is not None and isinstance(installs.get(peer), str):
            skipped[name] = str(installs[peer])
            continue
        progress(f"llama.cpp streaming kill through {name}: {trials} trials")
        try:
            rows.append(run_router(name, trials, seconds))
        except PeerUnavailable as exc:
            skipped[name] = str(exc)
    ours = [r for r in rows if r["router"].startswith("fleetwatch")]
    return {
        "rows": rows,
        "skipped": skipped,
        "peer_versions": installed_versions(installs),
        "table": table(rows),
        "fleetwatch_streams_cut": sum(r["streams_cut"] for r in ours),
    }


if __name__ == "__main__":
    main()
