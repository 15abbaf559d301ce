#!/usr/bin/env bash
# Installs the Debian packages fleetwatch's tests and demo run for real: Redis and PostgreSQL
# servers (started by the project on loopback, never as system services), a Python >= 3.11
# with venv, and cmake + g++ to build llama.cpp's llama-server once. Quick when everything is already there: it only calls apt-get for what is missing.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# llama.cpp's llama-server is built once from source (cached outside the checkout).
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
# The gateway benchmark compares against HAProxy with active health checks.
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
# promtool (from Debian's prometheus) lints every /metrics page in the tests.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# The dashboard is tested in a real headless Chromium (driven by Playwright, no download).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# Host-agent tests simulate machines with network namespaces and veth pairs (ip netns).
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing+=(iproute2)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
if ! python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    missing+=(python3 python3-venv python3-dev)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "fleetwatch needs these Debian packages: ${missing[*]}" >&2
    echo "Run as root, or install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "==> installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "==> Debian packages ready"
