"""A TensorRT-compatibility lint of ONNX graphs, run on every export and printed by ``pointserve doctor MODEL``.

The checks are the TensorRT limits exported point-cloud networks run into (a ball query written as a full sort,
a kNN over every point, a scatter-add pooling, a custom CUDA op):

* ``TopK`` with K > 3840 fails to build (NVIDIA/TensorRT#4244). K is the node's second input (opset >= 10; the
  ``k`` attribute before): a constant, or a value the lint works out from the graph: constants, ``Shape`` of
  static dimensions, ``Min`` / ``Max`` / arithmetic / ``Cast`` / ``Reshape`` / ``Gather`` ... over them, and an
  upper bound where only one is known (``Min(20, N)`` <= 20) or from the static length of the axis TopK runs
  over. A K it cannot bound (a TopK over all N points of a dynamic cloud, say) is a **warning**: it may build
  for the shapes the engine is profiled for and fail for larger ones.
* ``Scatter`` / ``ScatterElements`` / ``ScatterND`` with a ``reduction`` other than ``none``: no TensorRT layer.
* Ops outside the standard ONNX domain (``""`` / ``ai.onnx``): custom ops need a plugin.
* ``Loop`` without a constant trip count (input ``M`` absent, or not resolvable to a constant): TensorRT needs
  a static count.

Sub-graphs (``Loop`` / ``If`` / ``Scan`` bodies) are checked too. :func:`lint_graph` returns the findings;
:func:`check_tensorrt_compatible` raises :class:`~pointserve.errors.TensorRTCompatibilityError` naming each
failing node, its op and why, unless told to allow them (``--allow-trt-incompatible``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pointserve.errors import ExportError, TensorRTCompatibilityError

if TYPE_CHECKING:
    import onnx

MAX_TOPK = 3840
STANDARD_DOMAINS = frozenset({"", "ai.onnx"})
SCATTER_OPS = frozenset({"Scatter", "ScatterElements", "ScatterND"})
_PASS_THROUGH = frozenset({"Identity", "Cast", "Squeeze", "Unsqueeze", "Reshape", "Flatten"})
ALLOW_FLAG = "--allow-trt-incompatible"

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class LintFinding:
    """One node TensorRT cannot (error) or may not (warning) take."""

    severity: Severity
    node: str
    op_type: str
    reason: str
    graph: str = "main"

    def describe(self) -> str:
        where = "" if self.graph == "main" else f" (in sub-graph {self.graph!r})"
        return f"{self.severity}: node {self.node!r} ({self.op_type}){where}: {self.reason}"

    def as_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "node": self.node, "op_type": self.op_type, "reason": self.reason}


@dataclass(frozen=True)
class LintReport:
    findings: tuple[LintFinding, ...]
    num_nodes: int

    @property
    def errors(self) -> list[LintFinding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[LintFinding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        if not self.findings:
            return f"TensorRT lint: passed ({self.num_nodes} nodes: no TopK > {MAX_TOPK}, scatter reduction, custom op)"
        counts = f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        return "\n".join([f"TensorRT lint: {counts} in {self.num_nodes} nodes", *(f.describe() for f in self.findings)])


# -- value resolution ---------------------------------------------------------------------------------------
class _Values:
    """Exact values (small int tensors) and upper bounds of a graph's tensors, worked out lazily."""

    def __init__(self, graph: onnx.GraphProto, outer: _Values | None = None) -> None:
        from onnx import numpy_helper

        self.outer = outer
        self.producers = {out: node for node in graph.node for out in node.output if out}
        self.constants: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.shapes: dict[str, list[int | None]] = {}
        for value in [*graph.input, *graph.value_info, *graph.output]:
            tensor_type = value.type.tensor_type
            if tensor_type.HasField("shape"):
                self.shapes[value.name] = [
                    d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim
                ]
        self._cache: dict[str, np.ndarray | None] = {}

    def shape(self, name: str) -> list[int | None] | None:
        if name in self.shapes:
            return self.shapes[name]
        return self.outer.shape(name) if self.outer else None

    def value(self, name: str, depth: int = 0) -> np.ndarray | None:
        """The tensor's value if it is a constant of the graph, else None."""
        if not name:
            return None
        if name in self.constants:
            return self.constants[name]
        if name in self._cache:
            return self._cache[name]
        node = self.producers.get(name)
        if node is None:
            result = self.outer.value(name, depth) if self.outer else None
        elif depth > 64:
            result = None
        else:
            try:
                result = self._evaluate(node, name, depth + 1)
            except Exception:  # odd shapes or attributes: not resolvable, never a crash
                result = None
        self._cache[name] = result
        return result

    def _evaluate(self, node: Any, name: str, depth: int) -> np.ndarray | None:
        from onnx import helper, numpy_helper

        op = node.op_type
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if op == "Constant":
            if "value" in attrs:
                return numpy_helper.to_array(attrs["value"])
            for key in ("value_int", "value_float"):
                if key in attrs:
                    return np.asarray(attrs[key])
            for key in ("value_ints", "value_floats"):
                if key in attrs:
                    return np.asarray(list(attrs[key]))
            return None
        if op == "Shape":
            shape = self.shape(node.input[0])
            if shape is None:
                return None
            start, end = attrs.get("start", 0), attrs.get("end", len(shape))
            dims = shape[start:end]
            return None if any(d is None for d in dims) else np.asarray(dims, dtype=np.int64)
        if op == "Size":
            shape = self.shape(node.input[0])
            return None if shape is None or None in shape else np.asarray(int(np.prod(shape)), dtype=np.int64)
        inputs = [self.value(i, depth) for i in node.input]
        if op in ("Identity", "Cast") and inputs[0] is not None:
            return inputs[0]
        if op in ("Squeeze", "Unsqueeze", "Reshape", "Flatten") and inputs[0] is not None:
            return self._reshape(op, inputs, attrs)
        if any(v is None for v in inputs):
            return None
        if op in ("Min", "Max", "Add", "Sub", "Mul", "Div"):
            func = {"Min": np.minimum, "Max": np.maximum, "Add": np.add, "Sub": np.subtract, "Mul": np.multiply}
            result = inputs[0]
            for other in inputs[1:]:
                if op != "Div":
                    result = func[op](result, other)
                else:
                    result = result // other if result.dtype.kind in "iu" else result / other
            return result
        if op == "Concat":
            return np.concatenate([np.atleast_1d(v) for v in inputs], axis=attrs.get("axis", 0))
        if op == "Gather":
            return np.take(inputs[0], inputs[1], axis=attrs.get("axis", 0))
        if op == "Slice" and len(inputs) >= 3:
            axes = inputs[3] if len(inputs) > 3 else range(len(inputs[1]))
            steps = inputs[4] if len(inputs) > 4 else [1] * len(inputs[1])
            index = [slice(None)] * inputs[0].ndim
            for start, end, axis, step in zip(inputs[1], inputs[2], axes, steps, strict=False):
                index[int(axis)] = slice(int(start), int(end), int(step))
            return inputs[0][tuple(index)]
        return None

    @staticmethod
    def _reshape(op: str, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray | None:
        value = inputs[0]
        if op == "Squeeze":
            axes = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("axes")
            return np.squeeze(value, axis=tuple(int(a) for a in axes)) if axes is not None else np.squeeze(value)
        if op == "Unsqueeze":
            axes = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("axes")
            return None if axes is None else np.expand_dims(value, tuple(int(a) for a in np.atleast_1d(axes)))
        if op == "Reshape" and len(inputs) > 1 and inputs[1] is not None:
            target = [int(d) if d != 0 else value.shape[i] for i, d in enumerate(inputs[1])]
            return value.reshape(target)
        return value.reshape(-1) if op == "Flatten" else None

    def upper_bound(self, name: str, depth: int = 0) -> int | None:
        """The largest value the (integer) tensor can hold, if the graph says; None if unbounded."""
        exact = self.value(name)
        if exact is not None:
            return int(np.max(exact)) if exact.size else None
        node = self.producers.get(name)
        if node is None or depth > 64:
            return None
        if node.op_type == "Min":  # bounded by any input that is bounded
            bounds = [b for b in (self.upper_bound(i, depth + 1) for i in node.input) if b is not None]
            return min(bounds) if bounds else None
        if node.op_type in _PASS_THROUGH:
            return self.upper_bound(node.input[0], depth + 1)
        if node.op_type in ("Max", "Concat"):  # bounded only if every input is
            bounds = [self.upper_bound(i, depth + 1) for i in node.input]
            return None if not bounds or any(b is None for b in bounds) else max(b for b in bounds if b is not None)
        return None


# -- the checks ---------------------------------------------------------------------------------------------
def _topk_findings(node: Any, values: _Values, graph_name: str) -> Iterator[LintFinding]:
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    name = node.name or node.output[0]
    if len(node.input) > 1:
        k = values.upper_bound(node.input[1])
        exact = values.value(node.input[1])
        described = f"K = {int(np.max(exact))}" if exact is not None else f"K <= {k}"
    else:  # TopK-1: K is the attribute
        k = int(attrs["k"]) if "k" in attrs else None
        described = f"K = {k}"
    if k is None:
        shape = values.shape(node.input[0])
        axis = int(attrs.get("axis", -1))
        length = shape[axis] if shape and -len(shape) <= axis < len(shape) else None
        if length is not None:  # K can never exceed the axis it selects along
            k, described = length, f"K <= {length} (the length of axis {axis})"
    if k is None:
        yield LintFinding(
            "warning",
            name,
            node.op_type,
            f"K ({node.input[1] if len(node.input) > 1 else '?'}) is not a constant and no bound on it could be "
            f"worked out from the graph; TensorRT fails to build TopK with K > {MAX_TOPK}",
            graph_name,
        )
    elif k > MAX_TOPK:
        yield LintFinding(
            "error",
            name,
            node.op_type,
            f"{described} > {MAX_TOPK}, the largest K TensorRT's TopK takes (select only the k nearest, "
            "topk(k, largest=False), rather than ordering every point)",
            graph_name,
        )


def _scatter_findings(node: Any, graph_name: str) -> Iterator[LintFinding]:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == "reduction":
            reduction = helper.get_attribute_value(attribute)
            reduction = reduction.decode() if isinstance(reduction, bytes) else str(reduction)
            if reduction != "none":
                yield LintFinding(
                    "error",
                    node.name or node.output[0],
                    node.op_type,
                    f"reduction={reduction!r}: TensorRT takes scatters without a reduction only",
                    graph_name,
                )


def _loop_findings(node: Any, values: _Values, graph_name: str) -> Iterator[LintFinding]:
    name = node.name or node.output[0]
    trip = node.input[0] if node.input else ""
    if not trip:
        yield LintFinding(
            "error",
            name,
            node.op_type,
            "no trip count (input M is absent: a while-loop); TensorRT needs a static one",
            graph_name,
        )
        return
    count = values.value(trip)
    if count is None:
        yield LintFinding(
            "error",
            name,
            node.op_type,
            f"trip count {trip!r} is not a constant (computed at run time); TensorRT needs a static one",
            graph_name,
        )


def _subgraphs(node: Any) -> Iterator[tuple[str, Any]]:
    from onnx import AttributeProto

    for attribute in node.attribute:
        if attribute.type == AttributeProto.GRAPH:
            yield f"{node.name or node.op_type}.{attribute.name}", attribute.g
        elif attribute.type == AttributeProto.GRAPHS:
            for i, graph in enumerate(attribute.graphs):
                yield f"{node.name or node.op_type}.{attribute.name}[{i}]", graph


def _lint(graph: Any, values: _Values, graph_name: str, local_functions: set[tuple[str, str]]) -> Iterator[LintFinding]:
    for node in graph.node:
        name = node.name or (node.output[0] if node.output else node.op_type)
        if node.domain not in STANDARD_DOMAINS:
            kind = "a local function" if (node.domain, node.op_type) in local_functions else "a custom op"
            yield LintFinding(
                "error",
                name,
                node.op_type,
                f"domain {node.domain!r} is not the standard ONNX domain: {kind}, which TensorRT cannot take "
                "without a plugin",
                graph_name,
            )
            continue
        if node.op_type == "TopK":
            yield from _topk_findings(node, values, graph_name)
        elif node.op_type in SCATTER_OPS:
            yield from _scatter_findings(node, graph_name)
        elif node.op_type == "Loop":
            yield from _loop_findings(node, values, graph_name)
        for sub_name, subgraph in _subgraphs(node):
            yield from _lint(subgraph, _Values(subgraph, values), sub_name, local_functions)


def _with_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with inferred shapes (static dimensions let ``Shape`` resolve); as it is if inference fails."""
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # inference is a help here, never a requirement
        return model


def lint_graph(model: onnx.ModelProto | str | Path | bytes) -> LintReport:
    """Every TensorRT-compatibility finding of an ONNX model (a ModelProto, a path or serialised bytes)."""
    import onnx

    if isinstance(model, (str, Path)):
        try:
            model = onnx.load(str(model))
        except Exception as exc:  # OSError, protobuf DecodeError
            raise ExportError(f"{model}: cannot read ONNX model ({type(exc).__name__}: {exc})") from None
    elif isinstance(model, bytes):
        model = onnx.load_from_string(model)
    model = _with_shapes(model)
    local_functions = {(f.domain, f.name) for f in model.functions}
    findings = tuple(_lint(model.graph, _Values(model.graph), "main", local_functions))
    return LintReport(findings, _count_nodes(model.graph.node))


def _count_nodes(nodes: Iterable[Any]) -> int:
    total = 0
    for node in nodes:
        total += 1
        for _, subgraph in _subgraphs(node):
            total += _count_nodes(subgraph.node)
    return total


def check_tensorrt_compatible(
    model: onnx.ModelProto | str | Path | bytes, *, allow: bool = False, what: str = "the exported graph"
) -> LintReport:
    """Lint ``model``; raise :class:`TensorRTCompatibilityError` naming every failing node unless ``allow``."""
    report = lint_graph(model)
    if report.errors and not allow:
        lines = "; ".join(f.describe() for f in report.errors)
        raise TensorRTCompatibilityError(
            f"{what} is not TensorRT-compatible: {lines} (pass {ALLOW_FLAG} to export it anyway)"
        )
    return report


__all__ = [
    "ALLOW_FLAG",
    "MAX_TOPK",
    "LintFinding",
    "LintReport",
    "check_tensorrt_compatible",
    "lint_graph",
]
