#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: lint, unit tests, then integration
# tests that start the real gateway with the real vLLM engine and model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m gateway.cli model pull
.venv/bin/python -m pytest -p no:cacheprovider -ra "$@"
