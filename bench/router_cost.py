"""What routing costs per request: each strategy's pipeline (filters, scorers, pick) over 3
instances, and rendering plus hashing a multi-turn chat prompt for the prefix scorer, in
microseconds, in this process (no I/O: the CPU the gateway spends deciding)."""

from __future__ import annotations

import time

from _common import emit, parser, progress
from fleetwatch.registry._model import Instance, InstanceStatus
from fleetwatch.routing import (
    LoadStats,
    Routable,
    RouteRequest,
    RouterSettings,
    ServesModel,
    Signals,
    Strategy,
    TenantAllowed,
    build_pipeline,
    prompt_blocks,
    render_prompt,
)

#: A conversation of the size bench/prefix_routing.py sends at its third turn.
CHAT = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "You are a careful assistant. " * 70},
        *[
            {"role": role, "content": f"turn {n} " * 30}
            for n in range(4)
            for role in ("user", "assistant")
        ],
    ],
}


def _per_call_us(call: object, count: int) -> float:
    assert callable(call)
    started = time.perf_counter()
    for _ in range(count):
        call()
    return round((time.perf_counter() - started) / count * 1e6, 2)


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    count = 5_000 if args.quick else 50_000
    instances = [
        Instance(service="llm", instance_id=f"i{n}", host="127.0.0.1", port=8000 + n,
                 status=InstanceStatus.AVAILABLE, metadata={"model": "m"})
        for n in range(3)
    ]  # fmt: skip
    settings = RouterSettings(session_header="x-session-id")
    blocks = prompt_blocks(render_prompt(CHAT), settings.block_chars)
    request = RouteRequest(model="m", session="chat-1", blocks=blocks)
    costs: dict[str, float] = {
        "render + hash prompt": _per_call_us(
            lambda: prompt_blocks(render_prompt(CHAT), settings.block_chars), count
        ),
    }
    for strategy in Strategy:
        stats = LoadStats()
        pipeline = build_pipeline(
            RouterSettings(strategy=strategy.value),
            Signals(stats=stats),
            filters=(ServesModel(), Routable(), TenantAllowed()),
        )

        def route(pipeline: object = pipeline) -> None:
            found = pipeline.candidates(request, instances)  # type: ignore[attr-defined]
            pipeline.choose(request, found)  # type: ignore[attr-defined]

        costs[strategy.value] = _per_call_us(route, count)
        progress(f"{strategy.value}: {costs[strategy.value]} us per request")
    emit(
        "router_cost",
        {
            "mode": "quick" if args.quick else "full",
            "calls": count,
            "prompt_chars": len(render_prompt(CHAT)),
            "prompt_blocks": len(blocks),
            "us_per_request": costs,
            "headline": {
                "prefix strategy us/request (filters+scorers+pick)": costs["prefix"],
                "prompt render+hash us/request": costs["render + hash prompt"],
                "least-load us/request": costs["least-load"],
            },
        },
    )


if __name__ == "__main__":
    main()
