#!/usr/bin/env bash
# The README's test command, and CI's (.ci/run): install everything the suite needs into a fresh
# virtualenv of its own (.venv-test, at the versions locked in constraints.txt; your .venv and a
# server running from it are left alone), then lint (ruff, hadolint, compose schema), types
# (mypy) and the pytest suite (unit, integration, Kafka, Redis, official JS client, headless
# Chromium, the HAProxy topology of deploy/). It fails if no test ran, and if the run left
# files that git would see in the work tree.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${REALTIME_TEST_VENV:-.venv-test}"
step() { printf '\n== %s (%s)\n' "$1" "$(date +%H:%M:%S)"; }
tree_state() { git status --porcelain --untracked-files=all 2>/dev/null || true; }
before="$(tree_state)"

step "virtualenv $VENV (locked: constraints.txt)"
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet --constraint constraints.txt -e ".[dev]"

step "system packages"
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs npm)
command -v haproxy >/dev/null || need+=(haproxy)
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
"$VENV/bin/ruff" check realtime tests loadtest deploy
step "container files (hadolint, compose schema)"
"$VENV/bin/hadolint" Dockerfile
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
step "mypy"
"$VENV/bin/mypy"
"$VENV/bin/mypy" deploy/native.py

step "pytest"
status=0
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@" || status=$?
if [ "$status" = 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
fi

step "work tree unchanged"
after="$(tree_state)"
if [ "$before" != "$after" ]; then
  echo "the run left changes in the work tree (ignore or stop writing them):" >&2
  diff <(printf '%s\n' "$before") <(printf '%s\n' "$after") >&2 || true
  [ "$status" != 0 ] || status=1
fi
exit "$status"
