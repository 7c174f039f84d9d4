#!/usr/bin/env bash
# The main job on the built-in default: build the quickstart repository if it is missing (export the shipped
# `shapes` classifier and part-segmentation model, calibrate, build the CPU variants, check their accuracy; `--retrain`
# trains both first) and serve it on localhost:8000. Creates its own environment on a fresh machine; later starts only
# serve.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh dev
exec .venv/bin/pointserve quickstart "$@"
