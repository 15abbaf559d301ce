"""What the gateway adds: latency and maximum requests/s, direct vs fleetwatch gateway vs
HAProxy (active health checks), on the same fast local OpenAI-compatible backends, in one run.

Three backend processes (``fleetwatch.sandbox.openai_backend``: a 4-token chat completion in
well under a millisecond) are registered with a ``fleetwatch serve`` registry. Latency: an open
loop of POST /v1/chat/completions at a fixed rate, from each request's intended send time, to
one backend directly, through ``fleetwatch gateway`` and through HAProxy. Maximum: wrk, 32
connections, closed loop. Everything shares this machine's cores, load generator included, so
the ratios matter more than the absolute figures.
"""

from __future__ import annotations

import asyncio

from _common import emit, open_loop, parser, progress
from _fleet import CHAT, fast_fleet, gateway, haproxy, wrk
from fleetwatch.sandbox import free_port

RATE = 200


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    seconds = 3.0 if args.quick else 10.0
    results: dict[str, dict[str, object]] = {}
    with fast_fleet(3) as (registry_url, ports, _pids):
        gateway_port, haproxy_port = free_port(), free_port()
        with gateway(gateway_port, registry_url), haproxy(haproxy_port, ports):
            asyncio.run(asyncio.sleep(2.0))  # the gateway's first view; HAProxy's checks
            targets = {"direct": ports[0], "gateway": gateway_port, "haproxy": haproxy_port}
            for name, port in targets.items():
                progress(f"{name}: open loop {RATE}/s for {seconds:g}s")
                latency = asyncio.run(
                    open_loop(
                        port, RATE, seconds, method="POST", path="/v1/chat/completions", body=CHAT
                    )
                )
                progress(f"{name}: wrk for {seconds:g}s")
                results[name] = {"open_loop": latency, "max": wrk(port, seconds)}
                progress(f"  {name}: p50 {latency['latency_ms']['p50']} ms, {results[name]['max']}")
    p50 = {k: v["open_loop"]["latency_ms"]["p50"] for k, v in results.items()}  # type: ignore[index]
    p99 = {k: v["open_loop"]["latency_ms"]["p99"] for k, v in results.items()}  # type: ignore[index]
    rps = {k: v["max"]["rps"] for k, v in results.items()}  # type: ignore[index]
    emit(
        "gateway_overhead",
        {
            "mode": "quick" if args.quick else "full",
            "results": results,
            "direct_rps": rps["direct"],
            "gateway_rps": rps["gateway"],
            "haproxy_rps": rps["haproxy"],
            "gateway_added_p50_ms": round(p50["gateway"] - p50["direct"], 3),
            "gateway_added_p99_ms": round(p99["gateway"] - p99["direct"], 3),
            "haproxy_added_p50_ms": round(p50["haproxy"] - p50["direct"], 3),
            "haproxy_added_p99_ms": round(p99["haproxy"] - p99["direct"], 3),
            "headline": {
                "gateway added p50 / p99 ms": f"{p50['gateway'] - p50['direct']:.2f} / "
                f"{p99['gateway'] - p99['direct']:.2f}",
                "HAProxy added p50 / p99 ms": f"{p50['haproxy'] - p50['direct']:.2f} / "
                f"{p99['haproxy'] - p99['direct']:.2f}",
                "max req/s direct / gateway / HAProxy": f"{rps['direct']} / {rps['gateway']} / "
                f"{rps['haproxy']}",
            },
            "comparison": {
                "gateway rps / HAProxy rps": round(rps["gateway"] / rps["haproxy"], 2),
                "gateway rps / direct rps": round(rps["gateway"] / rps["direct"], 2),
            },
        },
    )


if __name__ == "__main__":
    main()
