#!/usr/bin/env bash
# The whole test suite: lint, then pytest. Creates its own environment on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest -q "$@"
