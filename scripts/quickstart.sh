#!/usr/bin/env bash
# The main job on the built-in default: build the quickstart repository if it is missing (train the `shapes`
# classifier and part-segmentation model, export, calibrate, build the CPU variants) and serve it on
# localhost:8000. Creates its own environment on a fresh machine; later starts only serve.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh dev
exec .venv/bin/pointserve quickstart "$@"
