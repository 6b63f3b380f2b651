#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: lint, unit tests, then integration
# tests that start the real gateway with the real vLLM engine and model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# A real Prometheus server (and promtool) for the metrics tests: Debian's package.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m gateway.cli model pull
.venv/bin/python -m pytest -p no:cacheprovider -ra "$@"
