#!/usr/bin/env bash
# The CPU image built from the Dockerfile as it is, and served from for real (docs/deployment.md, "The image test").
#
#   sudo bash scripts/image-test.sh        # root: podman builds and mounts images; 2.5-6 min cold, 2.5-3 min warm
#
# 1. installs podman and debootstrap with apt-get when missing (Debian/Ubuntu);
# 2. makes the base image localhost/pybase:bookworm when missing: no registry is needed (nor reachable on CI), a
#    debootstrap'ed Debian bookworm with python3 stands in for python:3.12-slim-bookworm. It is kept afterwards
#    (~175 MB in /var/lib/containers) so the next run skips this step; POINTSERVE_IMAGE_TEST_KEEP_BASE=0 removes it;
# 3. podman build of ./Dockerfile, unchanged but for --build-arg PYTHON_IMAGE (no layer cache: every step runs);
# 4. serves a real repository (tests/docker/image_repository.py: a tiny PointNet classifier and segmenter, built with
#    the .venv) from the image's own filesystem, configuration and user: `podman run` cannot start containers on
#    these VMs (crun cannot set cgroups / rlimits), so the image's root filesystem is mounted and its entrypoint runs
#    under chroot as the image's USER with the image's ENV (host and port overridden: loopback, a free port), the
#    repository bind-mounted read-only at /models;
# 5. checks health, a classification (v1 and v2), a segmentation of a 5,000-point cloud, /metrics, the image's
#    HEALTHCHECK command, the server's user id (from /proc/PID/status), that its root filesystem (served read-only,
#    a tmpfs /tmp the only writable place) and /models are not writable, that torch is absent, the image size;
# 6. cleans up (trap, also on failure): stops the server, unmounts everything, removes the built image.
#
# Exit status: 0 passed, 77 skipped (not root, or no podman and no apt-get), anything else failed.
# The report (stdout, lines starting "image-test:") is what tests/docker/test_image_build.py asserts.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
BASE_IMAGE="${POINTSERVE_BASE_IMAGE:-localhost/pybase:bookworm}"
KEEP_BASE="${POINTSERVE_IMAGE_TEST_KEEP_BASE:-1}"
IMAGE="localhost/pointserve:image-test-$$"
SUITE=bookworm

say() { echo "image-test: $*"; }
skip() {
  say "SKIPPED: $*"
  exit 77
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(id -u)" = 0 ] || skip "needs root (podman builds, mounts and chroot)"
[ -x "$PYTHON" ] || skip "no $PYTHON (bash scripts/setup-env.sh dev makes it)"
started="$(now)"

# -- 1. tools -------------------------------------------------------------------------------------------------------
tools_started="$(now)"
if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
  command -v apt-get >/dev/null || skip "podman or debootstrap missing, and no apt-get to install them"
  export DEBIAN_FRONTEND=noninteractive
  packages=(podman debootstrap)
  if ! apt-get install -y -qq --no-install-recommends "${packages[@]}" >/tmp/image-test-apt.log 2>&1; then
    apt-get update -qq >>/tmp/image-test-apt.log 2>&1 || true
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >>/tmp/image-test-apt.log 2>&1 || {
      tail -20 /tmp/image-test-apt.log
      skip "apt-get could not install ${packages[*]} (log: /tmp/image-test-apt.log)"
    }
  fi
  say "installed $(podman --version), debootstrap $(dpkg-query -W -f='${Version}' debootstrap) in $(since "$tools_started") s"
fi
tools_s="$(since "$tools_started")"

# -- cleanup, on every exit -----------------------------------------------------------------------------------------
WORK="$(mktemp -d /tmp/pointserve-image-test.XXXXXX)"
SERVER_PID=""
MOUNTED=()     # what this script mounted (the server's root, then under it), unmounted last-first
IMAGE_ROOT=""  # `podman image mount` of the built image
cleanup() {
  local rc=$?
  set +e
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"  # graceful drain
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$SERVER_PID" 2>/dev/null
  fi
  [ -n "$SERVER_PID" ] && wait "$SERVER_PID" 2>/dev/null
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}"
  done
  # anything else still mounted under $WORK (debootstrap's /proc and /sys in the rootfs when it was interrupted)
  findmnt -rn -o TARGET | grep -F "$WORK/" | sort -r | while read -r target; do umount -l "$target"; done
  [ -n "$IMAGE_ROOT" ] && podman image unmount "$IMAGE" >/dev/null
  podman image exists "$IMAGE" 2>/dev/null && podman rmi -f "$IMAGE" >/dev/null
  if [ "$KEEP_BASE" = 0 ] && podman image exists "$BASE_IMAGE" 2>/dev/null; then
    podman rmi -f "$BASE_IMAGE" >/dev/null
  fi
  rm -rf --one-file-system "$WORK"  # never into a mount left behind
  [ "$rc" = 0 ] || [ "$rc" = 77 ] || say "FAILED (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -- 2. the base image ----------------------------------------------------------------------------------------------
debian_mirror() {
  # The bookworm mirror apt uses here (deb822 .sources, then one-line .list), else deb.debian.org.
  local found
  found="$(awk '/^[[:space:]]*$/ { uri = "" } /^URIs:/ { uri = $2 }
                /^Suites:/ && / bookworm( |$)/ && uri { print uri; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null)"
  [ -n "$found" ] || found="$(awk '$1 == "deb" { for (i = 2; i < NF; i++) if ($i !~ /^\[|\]$|=/) { if ($(i + 1) == "bookworm") { print $i; exit } break } }' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null)"
  echo "${found:-http://deb.debian.org/debian}"
}
base_started="$(now)"
if podman image exists "$BASE_IMAGE"; then
  base_note="cached"
else
  mirror="${POINTSERVE_DEBIAN_MIRROR:-$(debian_mirror)}"
  rootfs="$WORK/rootfs"
  # minbase + what the Dockerfile's stages use: python -m venv (python3-venv), pip over TLS (ca-certificates),
  # groupadd/useradd (passwd).
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
    "$SUITE" "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 || {
    tail -20 "$WORK/debootstrap.log"
    exit 1
  }
  # The host's CA bundle (it may hold a TLS-inspecting proxy's CA: pip in the build stage needs it), `python`
  # as python:*-slim has it, no package caches.
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  ln -sf python3 "$rootfs/usr/bin/python"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/tmp/*
  tar -C "$rootfs" -c . |
    podman import --change "ENV LANG=C.UTF-8" --change 'CMD ["python3"]' - "$BASE_IMAGE" >"$WORK/import.log" 2>&1 || {
    tail -20 "$WORK/import.log"
    exit 1
  }
  rm -rf "$rootfs"
  base_note="made with debootstrap from $mirror"
fi
base_s="$(since "$base_started")"
base_size="$(podman image inspect --format '{{.Size}}' "$BASE_IMAGE")"
say "base image: $BASE_IMAGE, $base_note in $base_s s ($((base_size / 1000000)) MB)"

# -- 3. build -------------------------------------------------------------------------------------------------------
build_started="$(now)"
podman build --isolation=chroot --network host --pull=never --format docker --layers=false --no-cache \
  --build-arg PYTHON_IMAGE="$BASE_IMAGE" -t "$IMAGE" -f Dockerfile . >"$WORK/build.log" 2>&1 || {
  tail -30 "$WORK/build.log"
  exit 1
}
build_s="$(since "$build_started")"
size="$(podman image inspect --format '{{.Size}}' "$IMAGE")"
say "build: $build_s s (podman build of ./Dockerfile, PYTHON_IMAGE=$BASE_IMAGE)"
say "image size: $((size / 1000000)) MB (base $((base_size / 1000000)) MB, pointserve's layers $(((size - base_size) / 1000000)) MB)"

# -- 4. serve a real repository from the image ----------------------------------------------------------------------
podman image inspect "$IMAGE" >"$WORK/inspect.json"
image_config="$("$PYTHON" tests/docker/image_checks.py config "$WORK/inspect.json")"  # (set -e sees it fail)
eval "$image_config"
say "image config: USER $IMAGE_USER, WORKDIR $IMAGE_WORKDIR, EXPOSE $IMAGE_PORTS, command ${IMAGE_COMMAND[*]}"
[ "${IMAGE_USER%%:*}" != root ] && [ "${IMAGE_USER%%:*}" != 0 ] || { say "the image runs as root"; exit 1; }

"$PYTHON" tests/docker/image_repository.py "$WORK/models" >/dev/null
repository="$WORK/models/repository"
chmod -R a+rX "$WORK"  # mktemp's 0700: the image's user must reach the bind-mounted repository

IMAGE_ROOT="$(podman image mount "$IMAGE")"
# The root the server sees: the image's, read-only (as readOnlyRootFilesystem in docker/kserve-inferenceservice.yaml);
# writable only /tmp (a tmpfs, the YAML's emptyDir). The repository is bind-mounted read-only at /models.
ROOTFS="$WORK/root"
mkdir "$ROOTFS"
mount --bind "$IMAGE_ROOT" "$ROOTFS"
MOUNTED+=("$ROOTFS")
mount -o remount,bind,ro "$ROOTFS"
mount_into() {  # mount_into TARGET MOUNT-ARGS...: mount under the server's root, remembered for the cleanup
  mount "${@:2}" "$ROOTFS$1"
  MOUNTED+=("$ROOTFS$1")
}
mount_into /proc -t proc proc
mount_into /sys -t sysfs -o ro sysfs
mount_into /dev --bind /dev
mount_into /tmp -t tmpfs -o mode=1777,size=256m tmpfs
mount_into /models --bind "$repository"
mount -o remount,bind,ro "$ROOTFS/models"
# HOME as docker and Kubernetes set it when the image's ENV does not: the user's passwd entry.
IMAGE_HOME="$(awk -F: -v uid="${IMAGE_USER%%:*}" '$3 == uid { print $6 }' "$ROOTFS/etc/passwd")"

port="$("$PYTHON" -c 'from pointserve.bench.processes import free_port; print(free_port())')"
# shellcheck disable=SC2016 # the sh -c script's "$0" and "$@": expanded in the image
in_image() {  # in_image [exec] [ENV=VALUE...] -- COMMAND...: run in the image's filesystem as its user, its ENV
  local how=() extra=()
  if [ "$1" = exec ]; then how=(exec); shift; fi  # exec: this (sub)shell becomes the command, keeping its pid
  while [ "$1" != -- ]; do extra+=("$1"); shift; done
  shift
  "${how[@]}" env -i HOME="${IMAGE_HOME:-/}" "${IMAGE_ENV[@]}" "${extra[@]}" \
    chroot --userspec="$IMAGE_USER" --groups="${IMAGE_USER##*:}" "$ROOTFS" \
    /bin/sh -c 'cd "$0" && exec "$@"' "$IMAGE_WORKDIR" "$@"
}
serve_started="$(now)"
in_image exec POINTSERVE_HOST=127.0.0.1 POINTSERVE_PORT="$port" -- "${IMAGE_COMMAND[@]}" >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!  # the background subshell, env, chroot and sh exec in turn: this is the server process itself
url="http://127.0.0.1:$port"
ready=""
for _ in $(seq 300); do
  kill -0 "$SERVER_PID" 2>/dev/null || break
  if "$PYTHON" -c "import httpx, sys; sys.exit(httpx.get('$url/v2/health/ready', timeout=2).status_code != 200)" 2>/dev/null; then
    ready=yes
    break
  fi
  sleep 0.3
done
[ -n "$ready" ] || { tail -30 "$WORK/serve.log"; say "server not ready"; exit 1; }
say "serving: ${IMAGE_COMMAND[*]} from the image at $url (ready in $(since "$serve_started") s), repository at /models"

# -- 5. checks ------------------------------------------------------------------------------------------------------
"$PYTHON" tests/docker/image_checks.py serve "$url" | sed 's/^/image-test: /' || {  # pipefail: the checks' status
  tail -30 "$WORK/serve.log"
  exit 1
}

in_image POINTSERVE_PORT="$port" -- "${IMAGE_HEALTHCHECK[@]}" || { say "the image's HEALTHCHECK failed"; exit 1; }
say "HEALTHCHECK: the image's own command exits 0 against the server"

uids="$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$SERVER_PID/status")"
gids="$(awk '/^Gid:/ { print $2, $3, $4, $5 }' "/proc/$SERVER_PID/status")"
exe="$(readlink "/proc/$SERVER_PID/exe")"
root="$(readlink "/proc/$SERVER_PID/root")"
[ "$uids" = "10001 10001 10001 10001" ] && [ "$gids" = "10001 10001 10001 10001" ] || {
  say "server process $SERVER_PID runs as uid $uids gid $gids"
  exit 1
}
[ "$root" = "$ROOTFS" ] && [ "${exe#"$ROOTFS"/}" != "$exe" ] || { say "server not in the image: $exe"; exit 1; }
say "user: server pid $SERVER_PID runs as uid 10001 gid 10001 (real, effective, saved, fs), not root; exe /${exe#"$ROOTFS"/}"

# shellcheck disable=SC2016 # $HOME: the image's, expanded there
if in_image -- sh -c ': >"$HOME/.write-test"' 2>/dev/null || in_image -- sh -c ': >/models/.write-test' 2>/dev/null; then
  say "the server's user can write to the root filesystem or the repository"
  exit 1
fi
say "filesystem: read-only root (HOME ${IMAGE_HOME:-/} included) and /models, writable /tmp only: the server ran so"

if probe="$(in_image -- python -c 'import torch' 2>&1)"; then
  say "torch imports in the image"
  exit 1
fi
grep -q "No module named 'torch'" <<<"$probe" || { say "import torch: $probe"; exit 1; }
dists="$(find "$ROOTFS"/opt/pointserve/lib/python3*/site-packages -maxdepth 1 -iname 'torch*' | wc -l)"
[ "$dists" = 0 ] || { say "torch files in the venv"; exit 1; }
venv_dists="$(find "$ROOTFS"/opt/pointserve/lib/python3*/site-packages -maxdepth 1 -name '*.dist-info' | wc -l)"
say "torch: absent (import torch: ModuleNotFoundError; no torch* in the venv's $venv_dists distributions)"

say "PASSED in $(since "$started") s (tools $tools_s s, base image $base_s s, build $build_s s)"
