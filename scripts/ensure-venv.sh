#!/usr/bin/env bash
# Creates .venv in the repository root and installs the locked dependencies plus fleetwatch
# itself and its dev-only harness, testing/ (both editable). A stamp keyed by the lock file and pyproject.toml makes the second run
# a no-op. With --create-only it only makes sure the venv (with pip) exists.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating $venv with $($python --version)"
    "$python" -m venv "$venv"
fi
[ "${1:-}" = "--create-only" ] && exit 0

key=$(cat requirements.lock pyproject.toml testing/pyproject.toml | sha256sum | cut -c1-16)
stamp="$venv/.fleetwatch-installed-$key"
[ -f "$stamp" ] && exit 0
echo "==> installing locked Python packages (requirements.lock)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.lock
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e . -e testing
rm -f "$venv"/.fleetwatch-installed-*
touch "$stamp"
echo "==> $venv ready"
