#!/usr/bin/env bash
# The whole suite in two phases, so that it uses the machine without starving the tests that
# measure it.
#
#   1. Tests that share the machine well, on $PYTEST_WORKERS pytest-xdist workers (a file
#      each at a time, so a file's tests keep their order). Most of them wait on timers and
#      sockets, and one process alone keeps 2 cores about a third busy.
#   2. Tests marked `serial` (see tests/conftest.py), one at a time: llama.cpp servers under
#      load, the demo, chaos. They take every core they get, and the requests they count as
#      failed must fail because of what the test does, not because another test took the CPU.
#
# Phase 2 runs after failed tests in phase 1 too (the exit status is then the first failure's),
# but not after an interrupt (Ctrl-C), an internal error or a usage error. Arguments go to both
# runs (a path, -k, -x ...; not -m or -n, which the phases set); a phase left with no test to
# run counts as passed, but not both. PYTEST_WORKERS=0 runs phase 1 in one process too.
set -uo pipefail
cd "$(dirname "$0")/.."

python=.venv/bin/python
workers=${PYTEST_WORKERS:-2}
# pytest's exit codes: 1 tests failed, 2 interrupted, 3 internal error, 4 usage error,
# 5 no tests collected.
tests_failed=1
no_tests_collected=5

run_phase() {
    local title=$1
    shift
    echo "==> pytest: $title"
    local started=$SECONDS
    "$python" -m pytest "$@"
    local code=$?
    echo "==> pytest: $title took $((SECONDS - started))s"
    return "$code"
}

where="$workers workers"
[ "$workers" = 0 ] && where="one process"
first=0
run_phase "phase 1 of 2, tests that share the machine ($where)" \
    -n "$workers" --dist loadfile -m "not serial" "$@" || first=$?
if [ "$first" -ne 0 ] && [ "$first" -ne "$tests_failed" ] && [ "$first" -ne "$no_tests_collected" ]; then
    exit "$first"
fi
second=0
run_phase "phase 2 of 2, tests that need the machine to themselves (one at a time)" \
    -m serial "$@" || second=$?

if [ "$first" -eq "$no_tests_collected" ] && [ "$second" -eq "$no_tests_collected" ]; then
    echo "==> pytest: no test matched in either phase" >&2
    exit "$no_tests_collected"
fi
for code in "$first" "$second"; do
    if [ "$code" -ne 0 ] && [ "$code" -ne "$no_tests_collected" ]; then
        exit "$code"
    fi
done
exit 0
