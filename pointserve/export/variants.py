"""The ONNX precision variants of a model version, in one place: fp32 comes from ``pointserve export``; fp16 is
converted from it (:func:`pointserve.export.fp16.convert_to_fp16`); int8 is calibrated and quantized from it by
the one int8 path (:func:`pointserve.calibration.variant.make_int8_variant`, which ``pointserve calibrate``
calls too), and ``int8-cpu`` is that int8 calibration in ONNX Runtime's fast CPU form. tf32 needs no file of
its own (it is the fp32 graph; it differs only in TensorRT).

Every file goes through :meth:`ModelVersion.add_variant` (atomic placement, hash recorded), and a variant that
already exists is kept unless ``force``. ``pointserve build`` calls this first, then builds TensorRT plans.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pointserve.errors import ConfigError, ModelNotFoundError
from pointserve.repository.manifest import ONNX_PRECISIONS, PRECISIONS, onnx_variant_for
from pointserve.repository.store import ModelVersion


@dataclass
class BuildStep:
    variant: str
    action: str  # "built", "kept" (already there), "shared" (tf32 uses the fp32 graph)
    seconds: float = 0.0
    detail: str = ""


# The CPU-only int8 form (pointserve.calibration.cpu_int8), built from the int8 variant; ONNX Runtime only.
CPU_INT8 = "int8-cpu"
ONNX_VARIANTS = (*ONNX_PRECISIONS, CPU_INT8)


def expand_precisions(precision: str | Sequence[str], backend: str) -> list[str]:
    """``"all"`` -> every variant of the backend (the ONNX files for onnxruntime, ``int8-cpu`` included; the four
    precisions otherwise); validates."""
    names = [precision] if isinstance(precision, str) else list(precision)
    if names == ["all"]:
        return list(ONNX_VARIANTS if backend == "onnxruntime" else PRECISIONS)
    for name in names:
        if name == CPU_INT8 and backend != "onnxruntime":
            raise ConfigError(f"{CPU_INT8} is an ONNX Runtime CPU form; TensorRT builds int8 from the int8 variant")
        if name != CPU_INT8:
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
    from pointserve.export.fp16 import convert_to_fp16

    out = convert_to_fp16(_fp32_path(model_version), workdir / "fp16.onnx")
    model_version.add_variant("fp16", out, precision="fp16", backend="onnxruntime", source="fp32")


def _build_int8(model_version: ModelVersion, workdir: Path, calibration: dict) -> None:
    """Calibration set under ``<version>/calibration/`` (reused when its recipe matches) + the Q/DQ graph.

    ``calibration`` keys: method (minmax), num_samples, seed, dataset_root, calibration_data, progress, log, and
    for the accuracy-guarded search target_agreement, methods, heldout_fraction.
    """
    from pointserve.calibration.variant import make_int8_variant

    _fp32_path(model_version)
    keys = ("method", "num_samples", "seed", "dataset_root", "calibration_data", "progress", "log")
    keys += ("target_agreement", "methods", "heldout_fraction")
    make_int8_variant(model_version, workdir=workdir, **{k: calibration[k] for k in keys if k in calibration})


def ensure_onnx_variants(
    model_version: ModelVersion,
    precisions: Sequence[str] = ONNX_VARIANTS,
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
            elif precision == CPU_INT8:
                from pointserve.calibration.variant import make_int8_cpu_variant

                make_int8_cpu_variant(model_version, workdir=workdir)
            else:
                raise ConfigError(f"unknown ONNX precision {precision!r}")
            steps.append(BuildStep(precision, "built", time.perf_counter() - start))
    return steps


__all__ = ["CPU_INT8", "ONNX_VARIANTS", "BuildStep", "ensure_onnx_variants", "expand_precisions"]
