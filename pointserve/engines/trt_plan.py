"""The TensorRT logic that needs no TensorRT: optimisation profiles, file names, build records, compatibility.

Kept apart from :mod:`pointserve.engines.trt_builder` and :mod:`pointserve.engines.tensorrt` so it is
unit-tested on machines without a GPU.

Shapes (the optimisation profile):
    points:   (B, N, C), B in [min_batch, max_batch], N in [min_points, max_points]
    category: (B,), part segmentation only
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from pointserve.engines.base import InputLimits
from pointserve.engines.gpu import GpuInfo
from pointserve.errors import ConfigError, EngineCompatibilityError
from pointserve.repository.manifest import BuildInfo, Precision

POINTS_INPUT = "points"
CATEGORY_INPUT = "category"
LOGITS_OUTPUT = "logits"
PLAN_SUFFIX = ".plan"
SIDECAR_SUFFIX = ".json"
TENSORRT_PRECISIONS: tuple[Precision, ...] = ("fp32", "tf32", "fp16", "int8")
DEFAULT_MAX_BATCH = 64
DEFAULT_WORKSPACE_MIB = 2048


# -- names -----------------------------------------------------------------------------------------------
def tensorrt_variant_name(precision: str) -> str:
    """The manifest variant of a plan: ``"fp16-tensorrt"``."""
    return f"{precision}-tensorrt"


def plan_file_name(precision: str) -> str:
    return f"{precision}-tensorrt{PLAN_SUFFIX}"


def sidecar_path(plan_path: str | Path) -> Path:
    """``fp16-tensorrt.plan`` -> ``fp16-tensorrt.plan.json`` (what the plan was built for)."""
    plan_path = Path(plan_path)
    return plan_path.with_name(plan_path.name + SIDECAR_SUFFIX)


def onnx_variant_for(precision: str) -> str:
    """The ONNX variant a plan of ``precision`` is built from: tf32 shares the fp32 graph."""
    if precision not in TENSORRT_PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(TENSORRT_PRECISIONS)}")
    return "fp32" if precision in ("fp32", "tf32") else precision


def timing_cache_file_name(gpu: GpuInfo, tensorrt_version: str) -> str:
    """A timing cache only helps on the GPU and TensorRT version that timed it, so both are in its name."""
    return f"timing-{gpu.sm}-trt{tensorrt_version}.cache"


def builder_flags_for(precision: str) -> list[str]:
    """The builder flags a precision sets. TensorRT 11 networks are strongly typed: fp16 and int8 come
    from the ONNX graph, so only TF32 (a permission for fp32 math, on by default) is left to decide."""
    onnx_variant_for(precision)  # validates
    return ["TF32"] if precision == "tf32" else []


# -- optimisation profile ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShapeProfile:
    """min/opt/max batch and points of one optimisation profile (and the input limits it implies)."""

    min_batch: int
    opt_batch: int
    max_batch: int
    min_points: int
    opt_points: int
    max_points: int
    channels: int = 3
    needs_category: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ConfigError(
                f"batch profile must satisfy 1 <= min <= opt <= max, got "
                f"{self.min_batch}/{self.opt_batch}/{self.max_batch}"
            )
        if not 1 <= self.min_points <= self.opt_points <= self.max_points:
            raise ConfigError(
                f"points profile must satisfy 1 <= min <= opt <= max, got "
                f"{self.min_points}/{self.opt_points}/{self.max_points}"
            )
        if self.channels < 3:
            raise ConfigError(f"points need at least 3 channels, got {self.channels}")

    def shapes(self, points_name: str = POINTS_INPUT, category_name: str = CATEGORY_INPUT) -> dict:
        """``{input name: (min shape, opt shape, max shape)}`` as TensorRT's ``set_shape`` takes them."""
        c = self.channels
        result = {
            points_name: (
                (self.min_batch, self.min_points, c),
                (self.opt_batch, self.opt_points, c),
                (self.max_batch, self.max_points, c),
            )
        }
        if self.needs_category:
            result[category_name] = ((self.min_batch,), (self.opt_batch,), (self.max_batch,))
        return result

    def limits(self, num_categories: int = 0) -> InputLimits:
        # Batches below min_batch are padded up to it by the TensorRT runner, so the limits start at 1.
        return InputLimits(
            max_batch=self.max_batch,
            min_points=self.min_points,
            max_points=self.max_points,
            channels=self.channels,
            needs_category=self.needs_category,
            num_categories=num_categories,
        )

    def as_build_shapes(self) -> dict[str, dict[str, list[int]]]:
        shapes = self.shapes()
        return {
            key: {name: list(triple[i]) for name, triple in shapes.items()}
            for i, key in enumerate(("min_shape", "opt_shape", "max_shape"))
        }


def default_max_points(num_points: int) -> int:
    """Twice the training size, at least 2048: room for bigger clouds without a huge activation budget."""
    return max(2 * num_points, 2048)


def profile_from_flags(
    num_points: int,
    *,
    channels: int = 3,
    needs_category: bool = False,
    min_batch: int | None = None,
    opt_batch: int | None = None,
    max_batch: int | None = None,
    min_points: int | None = None,
    opt_points: int | None = None,
    max_points: int | None = None,
) -> ShapeProfile:
    """Fill unset flags with defaults: batch 1 / max / 64 (the batcher fills batches under load, which is
    where throughput matters), points 1 / training size / :func:`default_max_points`."""
    max_batch = max_batch or DEFAULT_MAX_BATCH
    min_batch = min_batch or 1
    opt_batch = opt_batch or max_batch
    max_points = max_points or max(default_max_points(num_points), opt_points or 0)
    opt_points = opt_points or min(num_points, max_points)
    min_points = min_points or 1
    return ShapeProfile(min_batch, opt_batch, max_batch, min_points, opt_points, max_points, channels, needs_category)


def profile_from_build_info(build_info: BuildInfo, points_name: str = POINTS_INPUT) -> ShapeProfile:
    """Recover the profile a plan was built with from its manifest/sidecar record."""
    try:
        lo, opt, hi = (
            build_info.min_shape[points_name],
            build_info.opt_shape[points_name],
            build_info.max_shape[points_name],
        )
    except KeyError:
        raise EngineCompatibilityError(f"build record has no profile for input {points_name!r}") from None
    return ShapeProfile(
        lo[0], opt[0], hi[0], lo[1], opt[1], hi[1], channels=hi[2], needs_category=len(build_info.min_shape) > 1
    )


# -- build records ------------------------------------------------------------------------------------------
def make_build_info(
    gpu: GpuInfo,
    tensorrt_version: str,
    profile: ShapeProfile,
    *,
    workspace_mib: int,
    build_time_s: float,
    builder_flags: list[str],
    cuda_driver_version: str | None = None,
) -> BuildInfo:
    return BuildInfo(
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        tensorrt_version=tensorrt_version,
        workspace_mib=workspace_mib,
        build_time_s=round(build_time_s, 3),
        builder_flags=builder_flags,
        cuda_driver_version=cuda_driver_version,
        built_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **profile.as_build_shapes(),
    )


def write_sidecar(plan_path: str | Path, build_info: BuildInfo) -> Path:
    from pointserve.repository.store import atomic_write_text

    return atomic_write_text(sidecar_path(plan_path), build_info.model_dump_json(indent=2) + "\n")


def read_sidecar(plan_path: str | Path) -> BuildInfo | None:
    path = sidecar_path(plan_path)
    if not path.is_file():
        return None
    try:
        return BuildInfo.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise EngineCompatibilityError(f"{path}: unreadable build record ({exc.__class__.__name__})") from None


def _release(version: str) -> tuple[str, ...]:
    # "10.13.0.35" -> ("10", "13", "0"): plans are tied to the release, not to the build number.
    return tuple(version.split(".")[:3])


def check_plan_compatible(
    build_info: BuildInfo | None, gpu: GpuInfo | None, tensorrt_version: str | None, plan: str | Path = "plan"
) -> list[str]:
    """Refuse, before deserialising, a plan built for another GPU architecture or TensorRT release.

    Returns warnings (same compute capability, different GPU model: runs, but was tuned elsewhere).
    """
    if build_info is None or not build_info.compute_capability or not build_info.tensorrt_version:
        raise EngineCompatibilityError(
            f"{plan}: no record of the GPU and TensorRT version it was built for; rebuild it with `pointserve build`"
        )
    if gpu is None:
        raise EngineCompatibilityError(f"{plan}: TensorRT plans need an NVIDIA GPU, none is visible")
    if tensorrt_version is None:
        raise EngineCompatibilityError(f"{plan}: TensorRT is not installed")
    if build_info.compute_capability != gpu.compute_capability:
        raise EngineCompatibilityError(
            f"{plan}: built for {build_info.gpu_name} (compute capability {build_info.compute_capability}), "
            f"this GPU is {gpu.name} (compute capability {gpu.compute_capability}); rebuild it here"
        )
    if _release(build_info.tensorrt_version) != _release(tensorrt_version):
        raise EngineCompatibilityError(
            f"{plan}: built with TensorRT {build_info.tensorrt_version}, this is TensorRT {tensorrt_version}; "
            "rebuild it with this version"
        )
    warnings = []
    if build_info.gpu_name and build_info.gpu_name != gpu.name:
        warnings.append(
            f"{plan}: built on {build_info.gpu_name}, running on {gpu.name} (same compute capability "
            f"{gpu.compute_capability}); it runs, but its tactics were timed on the other GPU"
        )
    return warnings


__all__ = [
    "CATEGORY_INPUT",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_WORKSPACE_MIB",
    "LOGITS_OUTPUT",
    "POINTS_INPUT",
    "TENSORRT_PRECISIONS",
    "ShapeProfile",
    "builder_flags_for",
    "check_plan_compatible",
    "default_max_points",
    "make_build_info",
    "onnx_variant_for",
    "plan_file_name",
    "profile_from_build_info",
    "profile_from_flags",
    "read_sidecar",
    "sidecar_path",
    "tensorrt_variant_name",
    "timing_cache_file_name",
    "write_sidecar",
]
