#!/usr/bin/env bash
# The main job on the built-in default: train the PointNet classifier on the synthetic `shapes` dataset
# and print its evaluation table. Creates its own environment on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh dev
exec .venv/bin/pointserve train "$@"
