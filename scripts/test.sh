#!/usr/bin/env bash
# Install everything the test suite needs into a fresh virtualenv and run it:
# lint (ruff), types (mypy), then the whole pytest suite (unit, integration, Kafka, Redis,
# official JS client, headless Chromium). Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${REALTIME_VENV:-.venv}"
step() { printf '\n== %s (%s)\n' "$1" "$(date +%H:%M:%S)"; }

step "virtualenv $VENV"
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"

step "system packages"
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs npm)
if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "missing system packages: ${need[*]} (install them: apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

step "node packages for the official socket.io-client test"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)

step "ruff"
"$VENV/bin/ruff" check realtime tests loadtest
step "container files (hadolint, compose schema)"
"$VENV/bin/hadolint" Dockerfile
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
step "mypy"
"$VENV/bin/mypy"
step "pytest"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
