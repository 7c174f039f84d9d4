"""The manifest schema: ``repository/<model>/<version>/manifest.json``.

It is the contract between the build stages and the service: the model card, the input and output tensor
specs, and one entry per built variant, each with the sha256 of its file so a tampered or half-written file
is refused at load time.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from pointserve.card import ModelCard
from pointserve.errors import ConfigError
from pointserve.models.spec import TensorSpec

MANIFEST_FILE = "manifest.json"
MANIFEST_SCHEMA_VERSION = 1
# The checkpoint's own weights, kept in a version as the accuracy reference (served only when asked for).
REFERENCE_VARIANT = "fp32-torch"

# The vocabulary of variants, defined once: CLI choices, the engines' backend registry and selection import it.
Precision = Literal["fp32", "tf32", "fp16", "int8"]
Backend = Literal["onnxruntime", "tensorrt", "torch"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
BACKENDS: tuple[Backend, ...] = get_args(Backend)
# Precisions that have an ONNX file of their own (tf32 runs the fp32 graph; it differs only in TensorRT).
ONNX_PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "int8")


def onnx_variant_for(precision: str) -> str:
    """The ONNX variant that runs (or a TensorRT plan is built from) for ``precision``: tf32 shares the fp32
    graph. ConfigError for a name outside the vocabulary."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return "fp32" if precision == "tf32" else precision


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Int8FloatNode(_Record):
    """A node the accuracy-guarded int8 search kept in float, and why."""

    name: str
    op_type: str
    reason: str


class Int8Trial(_Record):
    """One int8 graph the search tried, judged on the held-out calibration clouds."""

    method: str
    label: str = Field(description="what was tried: 'all int8', 'family rule', '+ NODE alone', 'greedy: K float nodes'")
    float_nodes: int
    agreement: float
    mean_abs_logit_diff: float


class Int8Search(_Record):
    """The record of ``calibrate --target-agreement``: what was tried and what was kept in float."""

    target_agreement: float
    reached_target: bool
    method: str = Field(description="the calibration method of the chosen graph")
    heldout_agreement: float = Field(description="argmax agreement with fp32 on the held-out part (clouds or points)")
    heldout_mean_abs_logit_diff: float
    calibration_samples: int = Field(description="clouds that computed the ranges")
    heldout_samples: int = Field(description="clouds the search was judged on (never the test split)")
    methods_tried: list[str]
    float_nodes: list[Int8FloatNode] = Field(default_factory=list)
    trials: list[Int8Trial] = Field(default_factory=list)
    elapsed_s: float


class CalibrationInfo(_Record):
    method: Literal["minmax", "entropy", "percentile"]
    num_samples: int
    seed: int
    data_hash: str = Field(description="sha256 of the calibration .npz")
    file: str = Field(description="path of the calibration set, relative to the version folder")
    source: str | None = Field(default=None, description="where the clouds came from, e.g. 'folder /data/x (37 files)'")
    source_sha256: str | None = Field(default=None, description="content hash of the source clouds (points, labels)")
    search: Int8Search | None = Field(default=None, description="the accuracy-guarded search, when one chose the graph")


class BuildInfo(_Record):
    """What an engine was built for; a TensorRT plan only runs where these match."""

    gpu_name: str | None = None
    compute_capability: str | None = None
    tensorrt_version: str | None = None
    onnxruntime_version: str | None = None
    min_shape: dict[str, list[int]] = Field(default_factory=dict)
    opt_shape: dict[str, list[int]] = Field(default_factory=dict)
    max_shape: dict[str, list[int]] = Field(default_factory=dict)
    workspace_mib: int | None = None
    build_time_s: float | None = None
    builder_flags: list[str] = Field(default_factory=list, description='e.g. ["TF32"] for a tf32 build')
    cuda_driver_version: str | None = None
    built_utc: str | None = None


class AccuracyInfo(_Record):
    """A variant's accuracy on held-out data, next to the fp32 reference it was compared with."""

    dataset: str
    split: str = "test"
    num_samples: int
    overall_acc: float
    mean_class_acc: float | None = None
    mean_iou: float | None = None
    agreement_with_fp32: float
    max_abs_logit_diff: float
    measured_utc: str = Field(default_factory=_now)


class Variant(_Record):
    """One servable artefact: an ONNX graph of some precision or an engine built from one."""

    name: str = Field(description='unique within the version, e.g. "fp16" or "int8-tensorrt"')
    precision: Precision
    backend: Backend
    file: str = Field(description="path relative to the version folder")
    sha256: str
    size_bytes: int
    source: str | None = Field(default=None, description="the ONNX variant an engine was built from")
    built_for: BuildInfo | None = None
    calibration: CalibrationInfo | None = None
    accuracy: AccuracyInfo | None = None
    created_utc: str = Field(default_factory=_now)


class Manifest(_Record):
    schema_version: int = MANIFEST_SCHEMA_VERSION
    name: str
    version: int = Field(ge=1)
    card: ModelCard
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    variants: list[Variant] = Field(default_factory=list)
    export: dict = Field(default_factory=dict, description="export report: opset, parity per (B, N)")
    reference_accuracy: AccuracyInfo | None = Field(default=None, description="PyTorch fp32 on the test split")
    created_utc: str = Field(default_factory=_now)

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(name)
