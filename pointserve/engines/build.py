"""``pointserve build``: make sure a model version has the variants asked for.

onnxruntime (the default, no GPU): the fp32 graph comes from ``pointserve export``; fp16 is converted from
it (:func:`pointserve.export.convert_to_fp16`); int8 is calibrated and quantized from it
(:mod:`pointserve.calibration`). tf32 needs no file of its own (it is the fp32 graph).
tensorrt: one plan per precision, built from the matching ONNX variant (fp32 and tf32 from fp32).

Every file goes through :meth:`ModelVersion.add_variant` (atomic placement, hash recorded), and a
variant that already exists is kept unless ``force``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pointserve.engines.tensorrt.plan import (
    DEFAULT_WORKSPACE_MIB,
    TENSORRT_PRECISIONS,
    ShapeProfile,
    onnx_variant_for,
    plan_file_name,
    tensorrt_variant_name,
    timing_cache_file_name,
    write_sidecar,
)
from pointserve.errors import ConfigError, ModelNotFoundError
from pointserve.repository.store import ModelVersion

ONNX_PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class BuildStep:
    variant: str
    action: str  # "built", "kept" (already there), "shared" (tf32 uses the fp32 graph)
    seconds: float = 0.0
    detail: str = ""


def expand_precisions(precision: str | Sequence[str], backend: str) -> list[str]:
    """``"all"`` -> every precision of the backend; validates names."""
    names = [precision] if isinstance(precision, str) else list(precision)
    if names == ["all"]:
        return list(ONNX_PRECISIONS if backend == "onnxruntime" else TENSORRT_PRECISIONS)
    for name in names:
        onnx_variant_for(name)  # ConfigError for unknown names
    return names


def _fp32_path(model_version: ModelVersion) -> Path:
    if not model_version.has_variant("fp32"):
        raise ModelNotFoundError(
            f"{model_version.name} v{model_version.version} has no fp32 ONNX variant; "
            "run `pointserve export CHECKPOINT` first"
        )
    return model_version.variant_path("fp32")


def _build_fp16(model_version: ModelVersion, workdir: Path) -> None:
    from pointserve.export import convert_to_fp16

    out = convert_to_fp16(_fp32_path(model_version), workdir / "fp16.onnx")
    model_version.add_variant("fp16", out, precision="fp16", backend="onnxruntime", source="fp32")


def _build_int8(model_version: ModelVersion, workdir: Path, calibration: dict) -> None:
    """Calibration set under ``<version>/calibration/`` (reused when its recipe matches) + the Q/DQ graph.

    ``calibration`` keys: method (minmax), num_samples, seed, dataset_root, calibration_data, progress.
    """
    from pointserve.calibration.variant import make_int8_variant

    _fp32_path(model_version)
    keys = ("method", "num_samples", "seed", "dataset_root", "calibration_data", "progress")
    make_int8_variant(model_version, workdir=workdir, **{k: calibration[k] for k in keys if k in calibration})


def ensure_onnx_variants(
    model_version: ModelVersion,
    precisions: Sequence[str] = ONNX_PRECISIONS,
    *,
    force: bool = False,
    calibration: dict | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> list[BuildStep]:
    """Create the missing ONNX variants among ``precisions`` (fp32 must come from export)."""
    steps = []
    with tempfile.TemporaryDirectory(dir=model_version.path, prefix=".build-") as tmp:
        workdir = Path(tmp)  # inside the version folder: add_variant then moves files without copying
        for precision in precisions:
            if precision == "tf32":
                steps.append(
                    BuildStep("tf32", "shared", detail="tf32 runs the fp32 graph; it differs only in TensorRT")
                )
                continue
            if precision == "fp32":
                _fp32_path(model_version)
                steps.append(BuildStep("fp32", "kept", detail="from pointserve export"))
                continue
            if model_version.has_variant(precision) and not force:
                model_version.variant_path(precision)  # still intact?
                steps.append(BuildStep(precision, "kept"))
                continue
            log(f"building {precision} ...")
            start = time.perf_counter()
            if precision == "fp16":
                _build_fp16(model_version, workdir)
            elif precision == "int8":
                _build_int8(model_version, workdir, calibration or {})
            else:
                raise ConfigError(f"unknown ONNX precision {precision!r}")
            steps.append(BuildStep(precision, "built", time.perf_counter() - start))
    return steps


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


__all__ = ["BuildStep", "build_tensorrt_plans", "default_timing_cache_dir", "ensure_onnx_variants", "expand_precisions"]
