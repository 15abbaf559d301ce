"""Run every benchmark in bench/, store each JSON result and write a markdown summary.

Usage: ``make bench`` (full runs) or ``make bench BENCH_ARGS=--quick``. Each script also runs
alone: ``.venv/bin/python bench/<name>.py [--quick]``; its last stdout line is its JSON result.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def scripts() -> list[Path]:
    """Benchmark scripts: every bench/*.py except helpers (leading underscore) and this file."""
    return sorted(
        p for p in HERE.glob("*.py") if not p.name.startswith("_") and p.name != "run_all.py"
    )


def run(script: Path, extra: list[str]) -> dict[str, object]:
    """Run one script, streaming its progress; return its last-line JSON."""
    command = [sys.executable, str(script.relative_to(HERE.parent)), *extra]
    print(f"==> {' '.join(command)}", flush=True)
    started = time.monotonic()
    proc = subprocess.run(command, cwd=HERE.parent, stdout=subprocess.PIPE, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{script.name} failed with exit code {proc.returncode}")
    result: dict[str, object] = json.loads(lines[-1])
    result["command"] = " ".join(["python", *command[1:]])
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def summary(results: list[dict[str, object]]) -> str:
    """A short markdown page: headline figures, targets and the command behind each."""
    out = ["# fleetwatch benchmark summary", ""]
    out.append(f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `make bench`.")
    machine = dict(results[0].get("machine", {})) if results else {}  # type: ignore[call-overload]
    if machine:
        out.append(
            f"Machine: {machine.get('cpus')} CPUs, Python {machine.get('python')}, "
            f"{machine.get('platform')}."
        )
    out.append("")
    for result in results:
        out.append(f"## {result['bench']} ({result.get('mode', 'full')})")
        out.append("")
        out.append(f"Command: `{result['command']}` ({result['wall_s']} s)")
        out.append("")
        out.append("| figure | value |")
        out.append("|---|---|")
        for key, value in dict(result.get("headline", {})).items():  # type: ignore[call-overload]
            out.append(f"| {key} | {value} |")
        for key, value in dict(result.get("comparison", {})).items():  # type: ignore[call-overload]
            out.append(f"| {key} | {value} |")
        out.append("")
        targets = dict(result.get("targets", {}))  # type: ignore[call-overload]
        if targets:
            out.append("| target | met |")
            out.append("|---|---|")
            for key, met in targets.items():
                out.append(f"| {key} | {'yes' if met else '**no**'} |")
            out.append("")
        if isinstance(result.get("table"), str):  # a side-by-side table of its own
            out += [str(result["table"]), ""]
    return "\n".join(out)


def main() -> None:
    """Run them all in name order (or only those named: ``run_all.py propagation --quick``);
    the summary covers every stored result."""
    names = [a for a in sys.argv[1:] if not a.startswith("-")]
    extra = [a for a in sys.argv[1:] if a.startswith("-")]
    RESULTS.mkdir(exist_ok=True)
    for script in scripts():
        if names and script.stem not in names:
            continue
        result = run(script, extra)
        (RESULTS / f"{script.stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    results = [
        json.loads(path.read_text())
        for path in sorted(RESULTS.glob("*.json"))
        if path.stem in {s.stem for s in scripts()}
    ]
    (RESULTS / "summary.md").write_text(summary(results) + "\n")
    print(f"==> wrote {len(results)} result(s) and summary.md to {RESULTS}")


if __name__ == "__main__":
    main()
