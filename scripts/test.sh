#!/usr/bin/env bash
# The whole test suite: lint, then pytest. Creates its own environment on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh dev
# Triton's perf_analyzer, for tests/service/test_perf_analyzer.py (into .tools/, outside the environment)
perf_analyzer="$(bash scripts/install-perf-analyzer.sh)"  # (an assignment: set -e sees the script fail)
echo "perf_analyzer: $perf_analyzer"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest -q "$@"
