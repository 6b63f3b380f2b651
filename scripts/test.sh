#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: lint, unit tests, then integration
# tests that start the real gateway with the real vLLM engine and model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev  # the server, the dev extra and the tools package (tools/)
# Debian's packages: a real Prometheus server (and promtool) for the metrics tests,
# Chromium (with a font) for the console's browser tests; Playwright drives that Chromium
# and never downloads a browser of its own.
missing=()
{ command -v prometheus && command -v promtool; } >/dev/null || missing+=(prometheus)
# PostgreSQL and Redis for the shared-state tests (replicas); the tests start their own
# throwaway servers on loopback with these binaries.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m gateway.cli model pull
.venv/bin/python -m pytest -p no:cacheprovider -ra "$@"
