#!/bin/sh
# GPU image entrypoint: build TensorRT plans for the GPU found here (once; cached in the repository volume),
# then serve. `pointserve build` keeps a plan whose recorded compute capability matches this GPU and
# rebuilds one made for another GPU, so the second start only checks and goes straight to serving.
#
#   POINTSERVE_TRT_PRECISIONS  precisions to build (default: fp16,int8; "all" = fp32,tf32,fp16,int8)
#   POINTSERVE_BUILD_ENGINES   0 to skip the build step (serve whatever the repository has)
set -eu
repository="${POINTSERVE_REPOSITORY:-/models}"
if [ "${1:-serve}" = "serve" ] && [ "${POINTSERVE_BUILD_ENGINES:-1}" = "1" ]; then
  for model_dir in "$repository"/*/; do
    [ -d "$model_dir" ] || continue
    name="$(basename "$model_dir")"
    case "$name" in .*) continue ;; esac
    echo "pointserve-gpu: TensorRT plans for $name (${POINTSERVE_TRT_PRECISIONS:-fp16,int8})"
    pointserve build "$model_dir" --backend tensorrt --precision "${POINTSERVE_TRT_PRECISIONS:-fp16,int8}"
  done
fi
exec pointserve "$@"
