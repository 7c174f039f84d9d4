#!/usr/bin/env bash
# Installs Triton's perf_analyzer (the C++ load generator) into .tools/perf_analyzer/ and prints the path of the
# command to run. Idempotent: a second run checks the install and prints the path again.
#
#     bash scripts/install-perf-analyzer.sh          # -> /path/to/.tools/perf_analyzer/perf_analyzer
#     PERF_ANALYZER_DIR=/opt/pa bash scripts/install-perf-analyzer.sh
#
# Why this way (measured on Debian bookworm, glibc 2.36): the `perf-analyzer` package on PyPI is a placeholder
# without a binary, and tritonclient >= 2.53 wheels ship one that needs glibc 2.38. The tritonclient 2.41.1 wheel's
# binary runs once two shared libraries are found: libb64.so.0d (Debian's libb64-0d) and libcudart.so.12 (the
# nvidia-cuda-runtime-cu12 wheel; no GPU is needed, perf_analyzer only links it). Everything goes into the one
# folder: the wheel is unpacked there (the project's environment keeps its own tritonclient), the Debian package
# is extracted there with dpkg -x (nothing is installed system-wide), and a small wrapper sets LD_LIBRARY_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

TRITONCLIENT_VERSION=2.41.1
CUDART_REQUIREMENT="nvidia-cuda-runtime-cu12>=12,<13"
dest="${PERF_ANALYZER_DIR:-.tools/perf_analyzer}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
wrapper="$dest/perf_analyzer"

if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
if [ "$(uname -m)" != x86_64 ]; then
  echo "error: the tritonclient $TRITONCLIENT_VERSION wheel's perf_analyzer is built for x86_64, not $(uname -m)" >&2
  exit 1
fi

missing_libraries() {  # the shared libraries the binary still cannot find (empty when it can run)
  LD_LIBRARY_PATH="$dest/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$dest/bin/perf_analyzer" 2>/dev/null |
    awk '/not found/ {print $1}'
}

if [ -x "$wrapper" ] && [ -x "$dest/bin/perf_analyzer" ] && [ -z "$(missing_libraries)" ] &&
  "$wrapper" --version >/dev/null 2>&1; then
  echo "$wrapper"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest/bin" "$dest/lib"

# 1. The binary, out of the tritonclient wheel (downloaded, never installed into an environment).
"$python" -m pip download -q --no-deps --only-binary=:all: --platform manylinux1_x86_64 \
  "tritonclient==$TRITONCLIENT_VERSION" -d "$work/wheel" >&2
"$python" - "$work/wheel" "$dest/bin" <<'EOF'
import pathlib, stat, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("tritonclient-*.whl"))
target = pathlib.Path(sys.argv[2]) / "perf_analyzer"
with zipfile.ZipFile(wheel) as archive:
    name = next(n for n in archive.namelist() if n.endswith("/data/bin/perf_analyzer"))
    target.write_bytes(archive.read(name))
target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
EOF

# 2. libcudart.so.12, from NVIDIA's wheel, into lib/.
"$python" -m pip install -q --no-deps --only-binary=:all: --target "$work/cuda" "$CUDART_REQUIREMENT" >&2
cp -L "$work"/cuda/nvidia/cuda_runtime/lib/libcudart.so.12 "$dest/lib/"

# 3. libb64.so.0d: the system's if it has one, else Debian's package extracted into lib/ (apt lists are refreshed
#    once when the package is unknown, which needs root, as on CI).
if ! ldconfig -p 2>/dev/null | grep -q 'libb64\.so\.0d'; then
  if ! (cd "$work" && apt-get download libb64-0d >/dev/null 2>&1); then
    if [ "$(id -u)" -eq 0 ]; then
      apt-get update -qq >&2
      (cd "$work" && apt-get download libb64-0d >&2)
    else
      echo "error: cannot download Debian's libb64-0d (run 'sudo apt-get update' once, or install libb64-0d)" >&2
      exit 1
    fi
  fi
  dpkg -x "$work"/libb64-0d_*.deb "$work/libb64"
  cp -L "$(find "$work/libb64" -name 'libb64.so.0d' | head -n1)" "$dest/lib/"
fi

cat >"$wrapper" <<'EOF'
#!/bin/sh
# Runs perf_analyzer with the shared libraries scripts/install-perf-analyzer.sh put next to it.
here="$(dirname "$(readlink -f "$0")")"
LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/bin/perf_analyzer" "$@"
EOF
chmod +x "$wrapper"

still_missing="$(missing_libraries)"
if [ -n "$still_missing" ]; then
  echo "error: perf_analyzer still misses shared libraries: $still_missing" >&2
  exit 1
fi
"$wrapper" --version >&2  # it runs: "Perf Analyzer Version 2.41.1 (commit ...)"
echo "$wrapper"
