"""The TensorRT logic that needs no TensorRT: optimisation profiles, file names, build records, compatibility.

Kept apart from :mod:`pointserve.engines.tensorrt.builder` and :mod:`pointserve.engines.tensorrt.runner` so it
is unit-tested on machines without a GPU.

An optimisation profile is a (min, opt, max) size for every *symbolic* dimension of the graph's inputs
(``batch``, ``num_points``, any other a family names); the per-input shapes TensorRT takes follow from the
inputs' :class:`TensorSpec` s, their fixed dimensions kept. Shapes (PointNet, for example):
    points:   (B, N, C), B in [min, max] of ``batch``, N in [min, max] of ``num_points``, C fixed
    category: (B,), part segmentation only

A plan's build record (:class:`BuildInfo`) keeps the per-input min/opt/max shapes; :func:`profile_from_build_info`
reads the profile back from them (records written before named inputs have ``points`` (B, N, C) and an optional
``category`` (B,), read the same way).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from pointserve.engines.base import InputLimits
from pointserve.engines.gpu import GpuInfo
from pointserve.errors import ConfigError, EngineCompatibilityError
from pointserve.models.spec import (
    BATCH_DIM,
    CATEGORY_INPUT,
    LOGITS_OUTPUT,
    POINTS_DIM,
    POINTS_INPUT,
    TensorSpec,
    point_cloud_inputs,
)
from pointserve.repository.manifest import PRECISIONS, BuildInfo, Precision, onnx_variant_for

PLAN_SUFFIX = ".plan"
SIDECAR_SUFFIX = ".json"
TENSORRT_PRECISIONS: tuple[Precision, ...] = PRECISIONS
DEFAULT_MAX_BATCH = 64
DEFAULT_WORKSPACE_MIB = 2048
_SHAPE_KEYS = ("min_shape", "opt_shape", "max_shape")

Shape = tuple[int, ...]
DimRange = tuple[int, int, int]


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
    """One optimisation profile: ``dims`` maps every symbolic dimension of the graph ``inputs`` to its
    (min, opt, max) size, e.g. ``{"batch": (1, 64, 64), "num_points": (1, 1024, 2048)}``."""

    dims: Mapping[str, DimRange]
    inputs: tuple[TensorSpec, ...] = field(default=())

    def __post_init__(self) -> None:
        dims: dict[str, DimRange] = {}
        for dim, sizes in dict(self.dims).items():
            sizes = tuple(int(s) for s in sizes)
            if len(sizes) != 3 or not 1 <= sizes[0] <= sizes[1] <= sizes[2]:
                raise ConfigError(
                    f"{_label(dim)} profile must satisfy 1 <= min <= opt <= max, got {'/'.join(map(str, sizes))}"
                )
            dims[str(dim)] = sizes  # type: ignore[assignment]
        object.__setattr__(self, "dims", dims)
        object.__setattr__(self, "inputs", tuple(self.inputs))
        for spec in self.inputs:
            unsized = [d for d in spec.shape if isinstance(d, str) and d not in dims]
            if unsized:
                raise ConfigError(
                    f"input {spec.name!r} has dimension(s) {', '.join(unsized)} the profile does not size "
                    f"(it sizes {', '.join(dims) or 'nothing'})"
                )

    # -- one dimension --------------------------------------------------------------------------------------
    def range_of(self, dim: str) -> DimRange:
        """(min, opt, max) of ``dim``; (1, 1, 1) for a dimension the inputs do not have."""
        return self.dims.get(dim, (1, 1, 1))

    @property
    def min_batch(self) -> int:
        return self.range_of(BATCH_DIM)[0]

    @property
    def opt_batch(self) -> int:
        return self.range_of(BATCH_DIM)[1]

    @property
    def max_batch(self) -> int:
        return self.range_of(BATCH_DIM)[2]

    @property
    def min_points(self) -> int:
        return self.range_of(POINTS_DIM)[0]

    @property
    def opt_points(self) -> int:
        return self.range_of(POINTS_DIM)[1]

    @property
    def max_points(self) -> int:
        return self.range_of(POINTS_DIM)[2]

    # -- per input ------------------------------------------------------------------------------------------
    def shapes(self, input_specs: Sequence[TensorSpec] | None = None) -> dict[str, tuple[Shape, Shape, Shape]]:
        """``{input name: (min shape, opt shape, max shape)}`` as TensorRT's ``set_shape`` takes them, for
        ``input_specs`` (default: the profile's own inputs); fixed dimensions are kept as they are."""
        specs = self.inputs if input_specs is None else tuple(input_specs)
        result: dict[str, tuple[Shape, Shape, Shape]] = {}
        for spec in specs:
            per_level: list[Shape] = []
            for level in range(3):
                shape = []
                for dim in spec.shape:
                    if isinstance(dim, int):
                        shape.append(dim)
                    elif dim in self.dims:
                        shape.append(self.dims[dim][level])
                    else:
                        raise ConfigError(f"input {spec.name!r}: the profile does not size dimension {dim!r}")
                per_level.append(tuple(shape))
            result[spec.name] = (per_level[0], per_level[1], per_level[2])
        return result

    def limits(self, value_bounds: Mapping[str, int] | None = None) -> InputLimits:
        """What a plan of this profile accepts. Batches below the profile's minimum are padded up to it by the
        TensorRT runner, so ``batch`` starts at 1; every other dimension spans [min, max]."""
        dims = {dim: (1 if dim == BATCH_DIM else lo, hi) for dim, (lo, _, hi) in self.dims.items()}
        return InputLimits(dims=dims, value_bounds=dict(value_bounds or {}))

    def as_build_shapes(self, input_specs: Sequence[TensorSpec] | None = None) -> dict[str, dict[str, list[int]]]:
        """``{"min_shape": {input: shape}, "opt_shape": ..., "max_shape": ...}``: the build record's fields."""
        shapes = self.shapes(input_specs)
        return {key: {name: list(triple[i]) for name, triple in shapes.items()} for i, key in enumerate(_SHAPE_KEYS)}

    def to_build_info(self, input_specs: Sequence[TensorSpec] | None = None, **fields: Any) -> BuildInfo:
        """A build record holding this profile's per-input shapes (and ``fields``)."""
        return BuildInfo(**self.as_build_shapes(input_specs), **fields)


def _label(dim: str) -> str:
    return "points" if dim == POINTS_DIM else dim


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
    inputs: Sequence[TensorSpec] | None = None,
    dims: Mapping[str, DimRange] | None = None,
    concat: bool = False,
) -> ShapeProfile:
    """The profile of ``pointserve build``'s flags, unset ones filled with defaults: batch 1 / max / 64 (the
    batcher fills batches under load, which is where throughput matters), points 1 / training size /
    :func:`~pointserve.engines.limits.default_max_points`.

    ``inputs``: the graph's input specs (default: ``points`` (B, N, ``channels``) and, with ``needs_category``,
    ``category`` (B,)); ``dims``: (min, opt, max) of any other symbolic dimension they have. Dimensions no
    input has are left out (the build record keeps per-input shapes only).

    ``concat``: the family concatenates a batch's clouds (the ``concat`` collate policy), so ``num_points``
    counts the points of the whole batch: its range is the per-cloud one times the batch range, and every other
    symbolic dimension (coarser cloud levels, per-cloud pooling rows) is sized like it unless ``dims`` says
    otherwise — none can exceed the batch's points.
    """
    from pointserve.engines.limits import default_max_points

    max_batch = max_batch or DEFAULT_MAX_BATCH
    min_batch = min_batch or 1
    opt_batch = opt_batch or max_batch
    max_points = max_points or max(default_max_points(num_points), opt_points or 0)
    opt_points = opt_points or min(num_points, max_points)
    min_points = min_points or 1
    if inputs is None:
        if channels < 3:
            raise ConfigError(f"points need at least 3 channels, got {channels}")
        inputs = point_cloud_inputs(channels, needs_category)
    points = (min_points, opt_points, max_points)
    if concat:
        points = (min_points * min_batch, opt_points * opt_batch, max_points * max_batch)
    sizes = {BATCH_DIM: (min_batch, opt_batch, max_batch), POINTS_DIM: points}
    if concat:
        for spec in inputs:
            sizes.update({d: points for d in spec.shape if isinstance(d, str) and d not in sizes})
    sizes.update(dims or {})
    used = {d for spec in inputs for d in spec.shape if isinstance(d, str)}
    return ShapeProfile({d: r for d, r in sizes.items() if d in used}, tuple(inputs))


def point_cloud_specs_from_build_info(build_info: BuildInfo, plan: str | Path = "plan") -> list[TensorSpec]:
    """The input specs of a plan built for raw clouds, from its build record alone: its one rank-3 input is the
    points (B, N, C) float32, a rank-1 input the category (B,) int64. Records of other graphs raise
    :class:`EngineCompatibilityError` (their specs come from the manifest)."""
    ranks = {name: len(shape) for name, shape in build_info.max_shape.items()}
    points = [name for name, rank in ranks.items() if rank == 3]
    others = [name for name, rank in ranks.items() if rank != 3]
    if len(points) != 1 or len(others) > 1 or any(ranks[name] != 1 for name in others):
        described = ", ".join(f"{name} {build_info.max_shape[name]}" for name in ranks) or "none"
        raise EngineCompatibilityError(
            f"{plan}: its inputs ({described}) are not one (B, N, C) point cloud and an optional (B,) category; "
            "their specs must come from the model's manifest"
        )
    specs = [
        TensorSpec(name=points[0], dtype="float32", shape=[BATCH_DIM, POINTS_DIM, build_info.max_shape[points[0]][2]])
    ]
    if others:
        specs.append(TensorSpec(name=others[0], dtype="int64", shape=[BATCH_DIM]))
    return specs


def profile_from_build_info(
    build_info: BuildInfo, input_specs: Sequence[TensorSpec] | None = None, plan: str | Path = "plan"
) -> ShapeProfile:
    """The profile a plan was built with, from its manifest/sidecar record, for the graph inputs
    ``input_specs`` (default: :func:`point_cloud_specs_from_build_info`). Every symbolic dimension must have
    one size range in every input, every fixed one its own size; the record must cover exactly the inputs."""
    if not build_info.min_shape:
        raise EngineCompatibilityError(f"{plan}: its build record has no optimisation profile; rebuild it")
    specs = list(input_specs) if input_specs is not None else point_cloud_specs_from_build_info(build_info, plan)
    names = [spec.name for spec in specs]
    extra = sorted(set(build_info.min_shape) - set(names))
    if extra:
        raise EngineCompatibilityError(
            f"{plan}: built for input(s) {', '.join(extra)} that the graph ({', '.join(names)}) does not take"
        )
    dims: dict[str, DimRange] = {}
    for spec in specs:
        try:
            lo, opt, hi = (getattr(build_info, key)[spec.name] for key in _SHAPE_KEYS)
        except KeyError:
            raise EngineCompatibilityError(f"{plan}: build record has no profile for input {spec.name!r}") from None
        if not len(lo) == len(opt) == len(hi) == len(spec.shape):
            raise EngineCompatibilityError(
                f"{plan}: input {spec.name!r} was built with shapes {lo} .. {hi}, the graph's is {spec.shape}"
            )
        for i, dim in enumerate(spec.shape):
            sizes = (int(lo[i]), int(opt[i]), int(hi[i]))
            if isinstance(dim, int):
                if sizes != (dim, dim, dim):
                    raise EngineCompatibilityError(
                        f"{plan}: input {spec.name!r} was built with dimension {i} in {sizes}, the graph's is {dim}"
                    )
            elif dims.setdefault(dim, sizes) != sizes:
                raise EngineCompatibilityError(
                    f"{plan}: dimension {dim!r} was built as {dims[dim]} in one input and {sizes} in {spec.name!r}"
                )
    try:
        return ShapeProfile(dims, tuple(specs))
    except ConfigError as exc:
        raise EngineCompatibilityError(f"{plan}: unusable build record: {exc}") from None


def plan_limits(limits: InputLimits, profile: ShapeProfile) -> InputLimits:
    """``limits`` (the card's) narrowed to what a plan of ``profile`` accepts: each dimension in both ranges."""
    accepted = profile.limits()
    dims: dict[str, tuple[int, int]] = {}
    for dim in dict.fromkeys([*limits.dims, *accepted.dims]):
        (lo_a, hi_a), (lo_b, hi_b) = limits.range_of(dim), accepted.range_of(dim)
        lo, hi = max(lo_a, lo_b), min(hi_a, hi_b)
        if lo > hi:
            raise EngineCompatibilityError(
                f"the plan takes {dim} in [{lo_b}, {hi_b}], outside the model's [{lo_a}, {hi_a}]; rebuild it"
            )
        dims[dim] = (lo, hi)
    return InputLimits(dims=dims, value_bounds=dict(limits.value_bounds))


# -- batches below the profile's minimum -------------------------------------------------------------------------
def _is_batched(spec: TensorSpec) -> bool:
    return bool(spec.shape) and spec.shape[0] == BATCH_DIM


def batch_size_of(feeds: Mapping[str, np.ndarray], specs: Sequence[TensorSpec]) -> int | None:
    """The batch size of ``feeds``: the first dimension of the first input whose first dimension is ``batch``."""
    for spec in specs:
        if _is_batched(spec) and spec.name in feeds:
            return int(np.shape(feeds[spec.name])[0])
    return None


def pad_batch(
    feeds: Mapping[str, np.ndarray], specs: Sequence[TensorSpec], min_batch: int
) -> tuple[dict[str, np.ndarray], int | None]:
    """Inputs whose first dimension is ``batch`` padded up to ``min_batch`` rows by repeating their first row
    (the others as they are), and the batch size before padding (None: no input has a batch dimension)."""
    batch = batch_size_of(feeds, specs)
    padded = dict(feeds)
    if batch is None or batch >= min_batch:
        return padded, batch
    for spec in specs:
        if _is_batched(spec) and spec.name in feeds:
            array = feeds[spec.name]
            padded[spec.name] = np.concatenate([array, np.repeat(array[:1], min_batch - batch, axis=0)])
    return padded, batch


def unpad_outputs(
    outputs: Mapping[str, np.ndarray], specs: Sequence[TensorSpec], batch: int | None
) -> dict[str, np.ndarray]:
    """Outputs whose first dimension is ``batch`` cut back to the first ``batch`` rows (the padding's answers
    dropped), each converted to its spec's dtype; outputs without a spec are kept as they are."""
    by_name = {spec.name: spec for spec in specs}
    result: dict[str, np.ndarray] = {}
    for name, value in outputs.items():
        spec = by_name.get(name)
        if spec is not None and batch is not None and _is_batched(spec):
            value = value[:batch]
        result[name] = np.array(value, dtype=spec.numpy_dtype if spec is not None else None)
    return result


def output_spec_from_engine(name: str, shape: Sequence[int], dtype: np.dtype) -> TensorSpec:
    """A spec for an engine output the manifest does not describe (a bare plan): dynamic dimensions are named
    ``batch``, then ``num_points``, in order (the (B, K) or (B, N, P) answers of a raw-cloud graph); floating
    outputs are given back as float32."""
    names = iter([BATCH_DIM, POINTS_DIM])
    dims: list[int | str] = []
    for i, size in enumerate(shape):
        dims.append(int(size) if int(size) >= 0 else next(names, f"{name}_{i}"))
    dtype = np.dtype(dtype)
    kind = "float32" if dtype.kind == "f" else ("int32" if dtype == np.int32 else "int64")
    return TensorSpec(name=name, dtype=kind, shape=dims)


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
    """The record of a plan built on ``gpu`` with ``profile`` (its per-input min/opt/max shapes)."""
    return profile.to_build_info(
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        tensorrt_version=tensorrt_version,
        workspace_mib=workspace_mib,
        build_time_s=round(build_time_s, 3),
        builder_flags=builder_flags,
        cuda_driver_version=cuda_driver_version,
        built_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
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
    "PLAN_SUFFIX",
    "POINTS_INPUT",
    "TENSORRT_PRECISIONS",
    "ShapeProfile",
    "batch_size_of",
    "builder_flags_for",
    "check_plan_compatible",
    "make_build_info",
    "onnx_variant_for",
    "output_spec_from_engine",
    "pad_batch",
    "plan_file_name",
    "plan_limits",
    "point_cloud_inputs",
    "point_cloud_specs_from_build_info",
    "profile_from_build_info",
    "profile_from_flags",
    "read_sidecar",
    "sidecar_path",
    "tensorrt_variant_name",
    "timing_cache_file_name",
    "unpad_outputs",
    "write_sidecar",
]
