"""Torch -> ONNX: one self-contained fp32 graph with dynamic batch and point axes, checked and simplified.

We use ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript). On torch 2.13 both exporters give
working dynamic axes for PointNet, but the dynamo path names the symbolic dimensions from the
``torch.export.Dim`` objects, folds the eval-mode BatchNorms into the Gemm weights and emits about half the
nodes of the TorchScript path (which is deprecated). Its lowest native opset is 18, so that is our default;
``opset=17`` works through the onnx version converter.

Every export is linted for TensorRT (:mod:`pointserve.export.trt_lint`: no TopK with K > 3840, no scatter with a
reduction, no custom op, static loop counts; a failure is an error unless ``allow_trt_incompatible``) and ends
with a parity check against the PyTorch module (:mod:`pointserve.export.parity`); a graph that disagrees is
never written.

The graph's inputs and outputs are the architecture spec's (:mod:`pointserve.models.spec`), every symbolic
dimension dynamic; the example inputs are made by the family's own preprocessor and collate policy.

Shapes (PointNet, for example):
    points:   (B, N, C) float32                       input "points", B and N dynamic
    category: (B,) int64                               input "category" (part segmentation only)
    logits:   (B, K) or (B, N, P) float32              output "logits"
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from pointserve.card import ModelCard
from pointserve.errors import ExportError
from pointserve.export.parity import DEFAULT_PARITY_TOLERANCE, ParityResult, check_parity
from pointserve.export.trt_lint import check_tensorrt_compatible
from pointserve.models.registry import get_spec
from pointserve.models.spec import TensorSpec

if TYPE_CHECKING:
    import onnx
    from torch import nn

DEFAULT_OPSET = 18
MIN_OPSET = 17
# Example sizes for tracing: no symbolic dimension may be 1 (torch.export would specialise it).
TRACE_BATCH, TRACE_POINTS = 2, 64
# Protobuf cannot serialise a single message over 2 GiB; weights must stay inside the file.
_MAX_SINGLE_FILE_BYTES = 2**31 - 1

# How unsupported-op failures name the op, TorchScript and dynamo exporters alike.
_OP_PATTERNS = (
    re.compile(r"OpOverload\(op='([\w.:]+)'"),
    re.compile(r"target=torch\.ops\.([\w.]+?)(?:\.default)?\]"),
    re.compile(r"Exporting the operator '([\w:.]+)'"),
    re.compile(r"Unsupported: ONNX export of operator ([\w:.]+)"),
)


class ExportReport(BaseModel):
    """What was exported and how well it matches PyTorch; stored as the manifest's ``export`` field."""

    model_config = ConfigDict(extra="forbid")

    file: str
    sha256: str
    size_bytes: int
    opset: int
    exporter: str
    torch_version: str
    onnx_version: str
    simplifier: str | None = Field(description="graph simplifier and version, None when simplification was off")
    simplify_error: str | None = None
    num_nodes: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE
    parity: list[ParityResult]
    max_abs_diff: float
    export_time_s: float
    tensorrt_lint: list[dict[str, str]] = Field(
        default_factory=list, description="TensorRT-compatibility findings (warnings, or errors that were allowed)"
    )

    def manifest_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# -- tensor specs -----------------------------------------------------------------------------------------
def io_specs(card: ModelCard) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The graph's named inputs and outputs as the manifest records them: the architecture spec's."""
    spec = get_spec(card.architecture)
    return spec.inputs(card), spec.outputs(card)


def graph_specs(model: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Read the specs back from a graph (used to check that simplification kept the axes symbolic)."""
    import onnx

    dtypes = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}
    dtypes |= {onnx.TensorProto.INT64: "int64", onnx.TensorProto.INT32: "int32"}

    def spec(value: onnx.ValueInfoProto) -> TensorSpec:
        tensor_type = value.type.tensor_type
        shape: list[int | str] = [d.dim_param if d.dim_param else d.dim_value for d in tensor_type.shape.dim]
        return TensorSpec(name=value.name, dtype=dtypes.get(tensor_type.elem_type, "float32"), shape=shape)

    initializers = {i.name for i in model.graph.initializer}
    inputs = [spec(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [spec(v) for v in model.graph.output]


# -- the unsupported-op error -----------------------------------------------------------------------------
def unsupported_op_name(exc: BaseException) -> str | None:
    """The name of the op an exporter could not translate, searched along the exception's cause chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for pattern in _OP_PATTERNS:
            match = pattern.search(str(current))
            if match:
                return match.group(1)
        current = current.__cause__ or current.__context__
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress prints, deprecation warnings and optional-package log lines."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


# -- export ----------------------------------------------------------------------------------------------
def trace_to_onnx(model: nn.Module, card: ModelCard, *, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Run the dynamo exporter with dynamic B and N; an op it cannot translate raises ExportError naming it."""
    import numpy as np
    import torch

    from pointserve.models.collate import random_feeds

    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old: pointserve exports opset >= {MIN_OPSET}")
    model = model.eval()
    spec = get_spec(card.architecture)
    inputs, outputs = spec.inputs(card), spec.outputs(card)
    feeds, _ = random_feeds(spec, card, TRACE_BATCH, TRACE_POINTS, np.random.default_rng(0))
    args = tuple(torch.from_numpy(feeds[tensor.name]) for tensor in inputs)
    dims: dict[str, Any] = {}
    dynamic_shapes = {
        tensor.name: {
            axis: dims.setdefault(dim, torch.export.Dim(dim))
            for axis, dim in enumerate(tensor.shape)
            if isinstance(dim, str)
        }
        for tensor in inputs
    }
    input_names = [tensor.name for tensor in inputs]
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                model,
                args,
                None,
                input_names=input_names,
                output_names=[tensor.name for tensor in outputs],
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:  # the exporters raise many unrelated types
        op = unsupported_op_name(exc)
        if op is not None:
            raise ExportError(f"cannot export {card.architecture}: operator {op!r} has no ONNX translation") from None
        raise ExportError(f"cannot export {card.architecture}: {_first_line(exc)}") from None
    if program is None:
        raise ExportError("the ONNX exporter returned no program")
    return program.model_proto


def simplify_onnx(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """onnxsim with the dynamic axes left symbolic; returns the model and ``"onnxsim <version>"``."""
    import onnxsim

    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise ExportError("onnxsim could not verify the simplified graph against the original")
    _restore_interface_dims(model, simplified)
    return simplified, f"onnxsim {onnxsim.__version__}"


def _restore_interface_dims(original: onnx.ModelProto, simplified: onnx.ModelProto) -> None:
    """Put the exporter's symbolic dimension names back on the graph's inputs and outputs.

    onnxsim re-runs shape inference and may rename an input's symbolic dimension it cannot tie to another
    (measured: pcn's ``sample_l`` (points_l,) came back as ``unk__0``); the names are the graph's contract with
    every runtime and TensorRT profile, so they are restored, never the sizes.
    """
    for kind in ("input", "output"):
        before = {v.name: v for v in getattr(original.graph, kind)}
        for value in getattr(simplified.graph, kind):
            if value.name not in before:
                continue
            old_dims = before[value.name].type.tensor_type.shape.dim
            new_dims = value.type.tensor_type.shape.dim
            if len(old_dims) != len(new_dims):
                continue
            for old, new in zip(old_dims, new_dims, strict=True):
                if old.HasField("dim_param") and not new.HasField("dim_value"):
                    new.dim_param = old.dim_param


def _check_specs(model: onnx.ModelProto, card: ModelCard) -> tuple[list[TensorSpec], list[TensorSpec]]:
    expected = io_specs(card)
    found = graph_specs(model)
    if found != expected:
        raise ExportError(f"exported graph has inputs/outputs {found}, expected {expected} (dynamic axes lost?)")
    return expected


def export_model(
    model: nn.Module,
    card: ModelCard,
    out_path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    simplify_graph: bool = True,
    parity_shapes: Sequence[tuple[int, int]] | None = None,
    tolerance: float = DEFAULT_PARITY_TOLERANCE,
    seed: int = 0,
    allow_trt_incompatible: bool = False,
) -> ExportReport:
    """Export an in-memory module; see :func:`export_onnx`. The file is written only if parity holds (and the
    TensorRT lint passes, unless ``allow_trt_incompatible``)."""
    import onnx
    import torch

    from pointserve.repository.store import atomic_write_bytes, sha256_file

    started = time.perf_counter()
    out_path = Path(out_path)
    graph = trace_to_onnx(model, card, opset=opset)
    simplifier, simplify_error = None, None
    if simplify_graph:
        try:
            graph, simplifier = simplify_onnx(graph)
        except ExportError as exc:
            simplify_error = str(exc)
        except Exception as exc:  # onnxsim raises RuntimeError/ValueError on graphs it cannot handle
            simplify_error = f"onnxsim failed: {_first_line(exc)}"
    try:
        onnx.checker.check_model(graph, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"exported graph fails the ONNX checker: {_first_line(exc)}") from None
    inputs, outputs = _check_specs(graph, card)
    lint = check_tensorrt_compatible(graph, allow=allow_trt_incompatible, what=f"the {card.architecture} graph")
    data = graph.SerializeToString()
    if len(data) > _MAX_SINGLE_FILE_BYTES:
        raise ExportError(f"model is {len(data)} bytes: over the 2 GiB protobuf limit for a single-file ONNX")
    shapes = list(parity_shapes) if parity_shapes is not None else get_spec(card.architecture).parity_shapes(card)
    parity = check_parity(model, card, data, shapes, tolerance=tolerance, seed=seed)
    atomic_write_bytes(out_path, data)
    return ExportReport(
        file=out_path.name,
        sha256=sha256_file(out_path),
        size_bytes=out_path.stat().st_size,
        opset=max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")),
        exporter="torch.onnx.export(dynamo=True)",
        torch_version=torch.__version__,
        onnx_version=onnx.__version__,
        simplifier=simplifier,
        simplify_error=simplify_error,
        num_nodes=len(graph.graph.node),
        inputs=inputs,
        outputs=outputs,
        parity_tolerance=tolerance,
        parity=parity,
        max_abs_diff=max(p.max_abs_diff for p in parity),
        export_time_s=round(time.perf_counter() - started, 3),
        tensorrt_lint=[finding.as_dict() for finding in lint.findings],
    )


def export_onnx(
    checkpoint_dir: str | Path,
    out_path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    simplify: bool = True,
    parity_shapes: Sequence[tuple[int, int]] | None = None,
    tolerance: float = DEFAULT_PARITY_TOLERANCE,
    allow_trt_incompatible: bool = False,
) -> ExportReport:
    """Export a checkpoint (``model.safetensors`` + ``card.json``) to one self-contained fp32 ONNX file.

    The graph has the architecture spec's inputs and outputs (PointNet: ``points`` (B, N, C), + ``category``
    (B,) for part segmentation, and ``logits``), every symbolic dimension dynamic; it passes ``onnx.checker``
    (full check), is simplified with onnxsim, and must match PyTorch within ``tolerance`` on every
    ``parity_shapes`` (B, N) — else :class:`ExportError`, and nothing is written. A graph the TensorRT lint
    fails raises :class:`~pointserve.errors.TensorRTCompatibilityError` unless ``allow_trt_incompatible``.
    """
    from pointserve.checkpoint import load_checkpoint

    model, card = load_checkpoint(checkpoint_dir)
    return export_model(
        model,
        card,
        out_path,
        opset=opset,
        simplify_graph=simplify,
        parity_shapes=parity_shapes,
        tolerance=tolerance,
        allow_trt_incompatible=allow_trt_incompatible,
    )


__all__ = [
    "DEFAULT_OPSET",
    "ExportReport",
    "ParityResult",
    "check_parity",
    "export_model",
    "export_onnx",
    "graph_specs",
    "io_specs",
    "unsupported_op_name",
]
