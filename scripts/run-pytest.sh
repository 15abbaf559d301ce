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
# Both phases always run; the exit status is the first failure's. Arguments go to both runs
# (a path, -k, -x ...); a phase left with no test to run counts as passed.
# PYTEST_WORKERS=0 runs phase 1 in one process too.
set -uo pipefail
cd "$(dirname "$0")/.."

python=.venv/bin/python
workers=${PYTEST_WORKERS:-2}
no_tests_collected=5

run_phase() {
    local title=$1
    shift
    echo "==> pytest: $title"
    local started=$SECONDS
    "$python" -m pytest "$@"
    local code=$?
    echo "==> pytest: $title took $((SECONDS - started))s"
    if [ "$code" -eq "$no_tests_collected" ]; then
        code=0
    fi
    return "$code"
}

status=0
run_phase "phase 1 of 2, tests that share the machine ($workers workers)" \
    -n "$workers" --dist loadfile -m "not serial" "$@" || status=$?
run_phase "phase 2 of 2, tests that need the machine to themselves (one at a time)" \
    -m serial "$@" || { code=$?; [ "$status" -eq 0 ] && status=$code; }
exit "$status"
