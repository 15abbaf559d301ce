"""What the gateway adds: latency and maximum requests/s, direct vs fleetwatch gateway vs
HAProxy (active health checks) vs the peer routers, on the same fast local OpenAI-compatible
backends, in one run.

Three backend processes (``fleetwatch_testing.openai_backend``: a 4-token chat completion in
well under a millisecond) are registered with a ``fleetwatch serve`` registry. Latency: an open
loop of POST /v1/chat/completions at a fixed rate, from each request's intended send time, to
one backend directly, through ``fleetwatch gateway``, through HAProxy and through each peer
(sglang-router and vllm-router ``round_robin``, the LiteLLM proxy ``simple-shuffle``; see
``bench/_peers.py``). Maximum: wrk, 32 connections, closed loop. Each peer runs only while it is
measured. Everything shares this machine's cores, load generator included, so the ratios matter
more than the absolute figures.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from _common import emit, open_loop, parser, progress
from _fleet import CHAT, MODEL, fast_fleet, gateway, haproxy, wrk
from _peers import (
    PeerInstall,
    PeerUnavailable,
    ensure_peers,
    installed_versions,
    litellm_proxy,
    sglang_router,
    vllm_router,
)
from fleetwatch_testing import free_port

RATE = 200

#: Peer routers by their name in the results: (policy, how to start it with that policy in
#: front of backend URLs). Each spreads requests evenly, as HAProxy's roundrobin does.
PEERS: dict[str, tuple[str, Callable[..., contextlib.AbstractContextManager[Any]]]] = {
    "sglang-router": ("round_robin", sglang_router),
    "vllm-router": ("round_robin", vllm_router),
    "litellm": ("simple-shuffle", lambda urls, policy: litellm_proxy(urls, MODEL, policy)),
}


def measure(
    name: str, port: int, seconds: float, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """wrk, then the open loop at RATE, against ``port`` (each request with ``headers``).

    wrk first: a target slower than RATE is left with a backlog of requests whose clients
    timed out in the open loop, which it would still be working off during wrk.
    """
    progress(f"{name}: wrk for {seconds:g}s")
    most = wrk(port, seconds, headers=headers)
    progress(f"{name}: open loop {RATE}/s for {seconds:g}s")
    latency = asyncio.run(
        open_loop(
            port, RATE, seconds, method="POST", path="/v1/chat/completions", body=CHAT,
            headers=headers,
        )
    )  # fmt: skip
    result = {"open_loop": latency, "max": most}
    progress(f"  {name}: p50 {latency['latency_ms']['p50']} ms, {result['max']}")
    return result


def measure_peer(name: str, ports: list[int], seconds: float) -> dict[str, Any]:
    """Start the peer in front of the backends, measure it, stop it; or why it could not."""
    policy, start = PEERS[name]
    try:
        with start([f"http://127.0.0.1:{p}" for p in ports], policy) as peer:
            return {"policy": policy, **measure(name, peer.port, seconds, peer.headers)}
    except (PeerUnavailable, OSError, RuntimeError) as exc:
        # A peer that would not start (or died) is recorded and skipped; a failure of wrk
        # itself (CalledProcessError) is the benchmark's own and stops it.
        progress(f"{name}: unavailable: {exc}")
        return {"unavailable": str(exc)[:500]}


def table(results: dict[str, dict[str, Any]]) -> str:
    """Every target side by side, with ratios to HAProxy, as markdown."""
    base = results["haproxy"]
    base_rps, base_p99 = base["max"]["rps"], base["open_loop"]["latency_ms"]["p99"]
    rows = [
        f"| target | max req/s (wrk, 32 conn) | req/s vs HAProxy | p50 ms at {RATE}/s "
        f"| p99 ms at {RATE}/s | p99 vs HAProxy | achieved of {RATE}/s | errors / non-2xx |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if "unavailable" in r:
            rows.append(f"| {name} | unavailable: {r['unavailable'][:120]} | | | | | | |")
            continue
        rps, lat = r["max"]["rps"], r["open_loop"]["latency_ms"]
        codes = r["open_loop"]["status_codes"]
        bad = sum(v for k, v in codes.items() if not k.startswith("2"))
        failed = sum(r["open_loop"]["errors"].values()) + bad + r["max"]["non_2xx"]
        rows.append(
            f"| {name} | {rps} | {rps / base_rps:.2f} | {lat['p50']} | {lat['p99']} "
            f"| {lat['p99'] / base_p99:.2f} | {r['open_loop']['achieved_rate_per_s']} | {failed} |"
        )
    return "\n".join(rows)


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    seconds = 3.0 if args.quick else 10.0
    installs = ensure_peers(list(PEERS))
    results: dict[str, dict[str, Any]] = {}
    with fast_fleet(3) as (registry_url, ports, _pids):
        gateway_port, haproxy_port = free_port(), free_port()
        with gateway(gateway_port, registry_url), haproxy(haproxy_port, ports):
            asyncio.run(asyncio.sleep(2.0))  # the gateway's first view; HAProxy's checks
            targets = {"direct": ports[0], "gateway": gateway_port, "haproxy": haproxy_port}
            for name, port in targets.items():
                results[name] = measure(name, port, seconds)
            # Each peer runs only while it is measured (the gateway and HAProxy stay up, idle,
            # as each of them is while the other is measured).
            for name, install in installs.items():
                if isinstance(install, PeerInstall):
                    results[name] = measure_peer(name, ports, seconds)
                else:
                    results[name] = {"unavailable": install}
    p50 = {k: v["open_loop"]["latency_ms"]["p50"] for k, v in results.items() if "max" in v}
    p99 = {k: v["open_loop"]["latency_ms"]["p99"] for k, v in results.items() if "max" in v}
    rps = {k: v["max"]["rps"] for k, v in results.items() if "max" in v}
    peers_rps = " / ".join(str(rps.get(name, "-")) for name in PEERS)
    emit(
        "gateway_overhead",
        {
            "mode": "quick" if args.quick else "full",
            "results": results,
            "peer_versions": installed_versions(installs),
            "peer_policies": {name: policy for name, (policy, _) in PEERS.items()},
            "direct_rps": rps["direct"],
            "gateway_rps": rps["gateway"],
            "haproxy_rps": rps["haproxy"],
            "gateway_added_p50_ms": round(p50["gateway"] - p50["direct"], 3),
            "gateway_added_p99_ms": round(p99["gateway"] - p99["direct"], 3),
            "haproxy_added_p50_ms": round(p50["haproxy"] - p50["direct"], 3),
            "haproxy_added_p99_ms": round(p99["haproxy"] - p99["direct"], 3),
            "table_md": table(results),
            "headline": {
                "gateway added p50 / p99 ms": f"{p50['gateway'] - p50['direct']:.2f} / "
                f"{p99['gateway'] - p99['direct']:.2f}",
                "HAProxy added p50 / p99 ms": f"{p50['haproxy'] - p50['direct']:.2f} / "
                f"{p99['haproxy'] - p99['direct']:.2f}",
                "max req/s direct / gateway / HAProxy": f"{rps['direct']} / {rps['gateway']} / "
                f"{rps['haproxy']}",
                f"max req/s {' / '.join(PEERS)}": peers_rps,
                f"p99 ms at {RATE}/s {' / '.join(PEERS)}": " / ".join(
                    str(p99.get(name, "-")) for name in PEERS
                ),
            },
            "comparison": {
                "gateway rps / HAProxy rps": round(rps["gateway"] / rps["haproxy"], 2),
                "gateway rps / direct rps": round(rps["gateway"] / rps["direct"], 2),
                **{
                    f"{name} rps / HAProxy rps": round(rps[name] / rps["haproxy"], 2)
                    for name in PEERS
                    if name in rps
                },
            },
        },
    )


if __name__ == "__main__":
    main()
