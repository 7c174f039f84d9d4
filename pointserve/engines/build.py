"""TensorRT plans of a model version: one per precision, built from the matching ONNX variant (fp32 and tf32
from fp32), which :func:`pointserve.export.variants.ensure_onnx_variants` makes first when it is missing.

Every file goes through :meth:`ModelVersion.add_variant` (atomic placement, hash recorded), and a
variant that already exists is kept unless ``force``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from pointserve.engines.tensorrt.plan import (
    DEFAULT_WORKSPACE_MIB,
    ShapeProfile,
    onnx_variant_for,
    plan_file_name,
    tensorrt_variant_name,
    timing_cache_file_name,
    write_sidecar,
)
from pointserve.export.variants import BuildStep, ensure_onnx_variants
from pointserve.repository.manifest import ONNX_PRECISIONS
from pointserve.repository.store import ModelVersion


def default_timing_cache_dir(model_version: ModelVersion) -> Path:
    """``<repository>/.cache/tensorrt``: shared by every model and version of the repository."""
    return model_version.path.parent.parent / ".cache" / "tensorrt"


def build_tensorrt_plans(
    model_version: ModelVersion,
    precisions: Sequence[str],
    profile: ShapeProfile,
    *,
    workspace_mib: int = DEFAULT_WORKSPACE_MIB,
    timing_cache_dir: str | Path | None = None,
    force: bool = False,
    calibration: dict | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> list[BuildStep]:
    """One plan per precision from the matching ONNX variant (created first when missing)."""
    from pointserve.engines.gpu import current_gpu
    from pointserve.engines.tensorrt.builder import engine_from_onnx, tensorrt_version

    version = tensorrt_version()
    gpu = current_gpu()
    if version is None or gpu is None:
        from pointserve.errors import BackendUnavailableError

        raise BackendUnavailableError(
            "TensorRT builds need the tensorrt package and an NVIDIA GPU "
            f"(tensorrt: {version or 'not installed'}, GPU: {gpu.name if gpu else 'none'})"
        )
    needed = sorted({onnx_variant_for(p) for p in precisions}, key=ONNX_PRECISIONS.index)
    steps = ensure_onnx_variants(model_version, needed, calibration=calibration, log=log)
    cache_dir = Path(timing_cache_dir) if timing_cache_dir else default_timing_cache_dir(model_version)
    cache_dir.mkdir(parents=True, exist_ok=True)
    timing_cache = cache_dir / timing_cache_file_name(gpu, version)
    with tempfile.TemporaryDirectory(dir=model_version.path, prefix=".build-") as tmp:
        for precision in precisions:
            name = tensorrt_variant_name(precision)
            if model_version.has_variant(name) and not force:
                built_for = model_version.variant(name).built_for
                if built_for and built_for.compute_capability == gpu.compute_capability:
                    steps.append(BuildStep(name, "kept"))
                    continue
            source = onnx_variant_for(precision)
            log(f"building {name} from {source} on {gpu.name} (TensorRT {version}) ...")
            plan = Path(tmp) / plan_file_name(precision)
            info = engine_from_onnx(
                model_version.variant_path(source), plan, precision, profile, workspace_mib, timing_cache, gpu=gpu
            )
            model_version.add_variant(
                name,
                plan,
                precision=precision,
                backend="tensorrt",
                source=source,
                built_for=info,
                calibration=model_version.variant(source).calibration,
            )
            # The sidecar travels with the plan, so a plan copied out of the repository still says what it is for.
            write_sidecar(model_version.variant_path(name, verify=False), info)
            steps.append(BuildStep(name, "built", info.build_time_s or 0.0, f"timing cache {timing_cache.name}"))
    return steps


__all__ = ["BuildStep", "build_tensorrt_plans", "default_timing_cache_dir", "ensure_onnx_variants"]
