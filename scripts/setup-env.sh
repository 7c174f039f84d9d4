#!/usr/bin/env bash
# Creates .venv (once) and installs pointserve with the given extras. torch is pinned to the CPU build
# here: an unpinned torch would pull a multi-GB CUDA build. Users elsewhere may install any torch >= 2.2.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
# dev also gets Ray Serve, so the `deploy ray` tests run in CI (users install it with the ray extra)
install="$extras"
if [ "$extras" = "dev" ]; then
  install="dev,ray"
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=".venv/.pointserve-$extras-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[$install]"
  touch "$stamp"
fi
