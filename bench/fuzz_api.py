"""The larger fuzz pass: schemathesis against the registry's and the gateway's OpenAPI.

``make test`` runs about 1,000 cases against each; this runs several times more (fewer with
``--quick``), with every check, and reports cases generated, failures and cases per second.

Target: 0 failures (no server error, no response outside its schema) on both APIs.
"""

from __future__ import annotations

import asyncio
import re
import time

from _common import emit, parser, progress
from fleetwatch_testing.fuzz import fuzzable_gateway, fuzzable_registry, run_schemathesis


def _failures(output: str) -> int:
    found = re.search(r"(\d+) found (\d+) unique failures", output)
    return int(found.group(2)) if found else 0


async def fuzz(examples: int) -> dict[str, dict[str, float]]:
    """Both APIs, one after the other (they share the cores)."""
    results: dict[str, dict[str, float]] = {}
    targets = (
        ("registry", fuzzable_registry, ("/v1/events",), ("negative_data_rejection",)),
        ("gateway", fuzzable_gateway, (), ()),
    )
    for name, target, exclude_paths, exclude_checks in targets:
        progress(f"{name}: schemathesis, {examples} examples per operation")
        started = time.monotonic()
        async with target() as url:
            report = await run_schemathesis(
                url,
                examples=examples,
                exclude_paths=exclude_paths,
                exclude_checks=exclude_checks,
                timeout=3000,
            )
        elapsed = time.monotonic() - started
        results[name] = {
            "generated": report.generated,
            "failures": _failures(report.output) if not report.passed else 0,
            "exit_code": report.returncode,
            "seconds": round(elapsed, 1),
            "cases_per_s": round(report.generated / elapsed, 1),
        }
        progress(f"{name}: {results[name]}")
        if not report.passed:
            progress(report.output[-3000:])
    return results


def main() -> None:
    """Run the pass and report it."""
    args = parser(__doc__ or "").parse_args()
    examples = 100 if args.quick else 1000
    results = asyncio.run(fuzz(examples))
    emit(
        "fuzz_api",
        {
            "mode": "quick" if args.quick else "full",
            "examples_per_operation": examples,
            "apis": results,
            "headline": {
                "registry_cases": results["registry"]["generated"],
                "registry_failures": results["registry"]["failures"],
                "gateway_cases": results["gateway"]["generated"],
                "gateway_failures": results["gateway"]["failures"],
            },
            "targets": {
                "registry: 0 failures": results["registry"]["exit_code"] == 0,
                "gateway: 0 failures": results["gateway"]["exit_code"] == 0,
            },
        },
    )


if __name__ == "__main__":
    main()
