"""Two revisions side by side in one run: every numeric headline figure, before and after.

``.venv/bin/python bench/_before_after.py BASE [--benches a,b,...] [--rounds N] [--full]``
checks ``BASE`` out in a temporary git worktree and runs each benchmark (``--quick`` unless
``--full``) on both trees, alternating (before, after, before, after...) so that the
machine's noise falls on both alike. The median of each figure over the rounds is compared:
``ratio`` is after / before. ``noise`` is how far the before tree's own rounds spread
(max / min - 1): a ratio outside ±10 % but inside that spread is the machine, not the code.
The same-run ratios a benchmark reports (gateway / HAProxy, memory / Redis...) are the
headline ratios: both sides of each share one run's noise.
The old tree runs from its own sources (``PYTHONPATH``) with this venv's packages. Writes
``bench/results/before_after.json`` and ``bench/results/before_after.md``; its last stdout
line is the JSON, as for every benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
#: The benchmarks whose figures a refactoring could move: the hot paths and the loops.
DEFAULT_BENCHES = (
    "gateway_overhead",
    "registry_api",
    "health_endpoint",
    "monitor_capacity",
    "propagation",
    "router_cost",
    "detection",
)
#: A ratio outside this band is flagged (the issue's ±10 %).
TOLERANCE = 0.10
#: Marks a ratio whose two sides were measured in one run.
SAME_RUN = "(same-run ratio)"


@contextlib.contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """``revision`` checked out in a temporary worktree, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="fleetwatch-before-")) / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--quiet", str(folder), revision],
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    try:
        yield folder
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=ROOT, check=False)


def run_one(tree: Path, bench: str, *, quick: bool) -> dict[str, object]:
    """One run of ``bench`` in ``tree``; its JSON result."""
    env = dict(os.environ)
    # The tree's own sources come first (before this venv's editable installs).
    sources = [str(tree / "src")] + (
        [str(tree / "testing" / "src")] if (tree / "testing").exists() else []
    )
    env["PYTHONPATH"] = os.pathsep.join(sources)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, f"bench/{bench}.py", *(["--quick"] if quick else [])],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        timeout=1800,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{bench} failed in {tree} with exit code {done.returncode}")
    result: dict[str, object] = json.loads(lines[-1])
    print(f"    {bench} in {tree.name}: {time.monotonic() - started:.0f} s", flush=True)
    return result


def numeric_headline(result: dict[str, object]) -> dict[str, float]:
    """The headline figures that are numbers: plain ones, and each of ``"a / b / c"``."""
    headline = result.get("headline", {})
    assert isinstance(headline, dict)
    figures: dict[str, float] = {}
    for key, value in headline.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            figures[key] = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                numbers = [float(part) for part in value.split(" / ")]
                for n, number in enumerate(numbers):
                    figures[key if len(numbers) == 1 else f"{key} [{n + 1}]"] = number
    # Ratios measured within one run (both sides under the same noise): the headline ratios.
    comparison = result.get("comparison", {})
    assert isinstance(comparison, dict)
    for key, value in comparison.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            figures[f"{key} {SAME_RUN}"] = float(value)
    gateway, haproxy = result.get("gateway_rps"), result.get("haproxy_rps")
    if isinstance(gateway, int | float) and isinstance(haproxy, int | float) and haproxy:
        figures[f"gateway / HAProxy req/s (unrounded) {SAME_RUN}"] = gateway / haproxy
    return figures


def compare(
    before: list[dict[str, float]], after: list[dict[str, float]]
) -> list[dict[str, object]]:
    """Median of each figure over the rounds, before and after, and their ratio."""
    rows: list[dict[str, object]] = []
    for key in before[0]:
        old = statistics.median(run[key] for run in before if key in run)
        new = statistics.median(run[key] for run in after if key in run)
        ratio = new / old if old else (1.0 if new == old else float("inf"))
        own = [run[key] for run in before if key in run]
        low, high = min(own), max(own)
        noise = high / low - 1 if low > 0 else float("inf") if high != low else 0.0
        rows.append(
            {
                "figure": key,
                "headline_ratio": key.endswith(SAME_RUN),
                "before": round(old, 4),
                "after": round(new, 4),
                "ratio": round(ratio, 3),
                "noise": round(noise, 3),
                "within_10pct": abs(ratio - 1) <= TOLERANCE,
                "within_noise": abs(ratio - 1) <= max(TOLERANCE, noise),
            }
        )
    return rows


def markdown(
    base: str, head: str, mode: str, rounds: int, table: dict[str, list[dict[str, object]]]
) -> str:
    out = [
        f"# Before / after: `{base}` vs `{head}`",
        "",
        f"Each figure is the median over {rounds} rounds, the two trees run alternately in one "
        f"run (`{mode}` mode). Ratio = after / before; outside ±10 % is in bold. Noise = the "
        "before tree's own spread over its rounds (max / min - 1). Headline ratios (same-run "
        "ratios) have both sides measured in one run.",
        "",
        "| bench | figure | before | after | ratio | noise |",
        "|---|---|---|---|---|---|",
    ]
    for bench, rows in table.items():
        for row in rows:
            ratio = f"{row['ratio']}" if row["within_10pct"] else f"**{row['ratio']}**"
            figure = f"**{row['figure']}**" if row["headline_ratio"] else row["figure"]
            out.append(
                f"| {bench} | {figure} | {row['before']} | {row['after']} | {ratio} "
                f"| {row['noise']} |"
            )
    rows = [row for rows in table.values() for row in rows]
    headline = [row for row in rows if row["headline_ratio"]]
    out += [
        "",
        f"- headline ratios within ±10 %: {sum(bool(r['within_10pct']) for r in headline)} "
        f"of {len(headline)}",
        f"- all figures within ±10 %: {sum(bool(r['within_10pct']) for r in rows)} of "
        f"{len(rows)}; within ±10 % or the before tree's own spread: "
        f"{sum(bool(r['within_noise']) for r in rows)} of {len(rows)}",
    ]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the revision to compare against (e.g. a commit)")
    parser.add_argument("--benches", default=",".join(DEFAULT_BENCHES))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="full mode, not --quick")
    args = parser.parse_args()
    benches = [b for b in args.benches.split(",") if b]
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    mode = "full" if args.full else "quick"
    table: dict[str, list[dict[str, object]]] = {}
    with worktree(args.base) as old_tree:
        for bench in benches:
            print(f"==> {bench}: {args.rounds} rounds, before and after alternately", flush=True)
            before, after = [], []
            for _ in range(args.rounds):
                quick = not args.full
                before.append(numeric_headline(run_one(old_tree, bench, quick=quick)))
                after.append(numeric_headline(run_one(ROOT, bench, quick=quick)))
            table[bench] = compare(before, after)
    RESULTS.mkdir(exist_ok=True)
    result = {
        "bench": "before_after",
        "base": args.base,
        "head": head,
        "rounds": args.rounds,
        "mode": mode,
        "table": table,
    }
    (RESULTS / "before_after.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "before_after.md").write_text(markdown(args.base, head, mode, args.rounds, table))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
