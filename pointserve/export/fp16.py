"""The fp16 variant: the fp32 graph converted to float16 inside, with float32 inputs and outputs.

TensorRT 11 builds strongly typed networks, so an fp16 engine comes from an fp16 ONNX graph: the precision
of every tensor is decided here, not by a builder flag. The conversion is onnxruntime's own
``onnxruntime.transformers.float16`` (the same converter as onnxconverter-common, shipped with onnxruntime,
so no extra dependency). ``keep_io_types`` inserts Casts at the graph boundary, so clients keep sending and
receiving float32.

What stays in fp32: by default nothing but the graph boundary. Measured on the ``shapes`` classifier
(docs/precision.md), keeping the T-Net's MatMul (points times the predicted transform) or the node that
produces the logits in fp32 changed neither the agreement with fp32 (100%) nor the max |Δlogit| (the error
is accumulated earlier, in the 1024-wide convolutions); ReduceMax is exact in fp16 up to rounding of its
input. ``keep_logits_fp32``, ``keep_fp32_ops`` and ``keep_fp32_nodes`` are there for models that need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pointserve.errors import ExportError

# Op types left in float32 by default; empty: every PointNet op measured fine in fp16 (see module docstring).
DEFAULT_KEEP_FP32_OPS: tuple[str, ...] = ()


def logits_producer(model) -> str | None:
    """Name of the node whose output is the graph output ``logits`` (the last Gemm / Conv of PointNet)."""
    outputs = {o.name for o in model.graph.output}
    for node in reversed(model.graph.node):
        if outputs.intersection(node.output):
            return node.name
    return None


def sort_topologically(graph) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs.

    The float16 converter appends the boundary Casts at the end of the node list; ONNX (and TensorRT's
    parser) require topological order.
    """
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    nodes = list(graph.node)
    pending, ordered = list(range(len(nodes))), []
    while pending:
        ready = [i for i in pending if all(name in available for name in nodes[i].input)]
        if not ready:
            raise ExportError(f"graph has a cycle or a dangling input near node {nodes[pending[0]].name!r}")
        for i in ready:
            ordered.append(nodes[i])
            available.update(nodes[i].output)
        done = set(ready)
        pending = [i for i in pending if i not in done]
    copies = [type(node)() for node in ordered]
    for copy, node in zip(copies, ordered, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def convert_to_fp16(
    src_onnx: str | Path,
    dst_onnx: str | Path,
    *,
    keep_fp32_ops: Sequence[str] = DEFAULT_KEEP_FP32_OPS,
    keep_fp32_nodes: Sequence[str] = (),
    keep_logits_fp32: bool = False,
) -> Path:
    """Write ``dst_onnx``: ``src_onnx`` in float16 with float32 inputs/outputs; returns its path.

    The result keeps the source's dynamic axes, passes ``onnx.checker`` (full check) and stays one file.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from pointserve.repository.store import atomic_write_bytes

    try:
        model = onnx.load(str(src_onnx))
    except Exception as exc:  # OSError, protobuf DecodeError
        raise ExportError(f"{src_onnx}: cannot read ONNX model ({type(exc).__name__}: {exc})") from None
    node_block = list(keep_fp32_nodes)
    if keep_logits_fp32:
        name = logits_producer(model)
        if name:
            node_block.append(name)
    missing = set(node_block) - {n.name for n in model.graph.node}
    if missing:
        raise ExportError(f"keep_fp32_nodes names nodes not in {src_onnx}: {sorted(missing)}")
    try:
        converted = convert_float_to_float16(
            model,
            keep_io_types=True,
            op_block_list=list(keep_fp32_ops),
            node_block_list=node_block,
        )
        sort_topologically(converted.graph)
        onnx.checker.check_model(converted, full_check=True)
    except Exception as exc:  # the converter asserts and raises ValueError/KeyError on odd graphs
        raise ExportError(f"fp16 conversion of {src_onnx} failed: {exc}") from None
    return atomic_write_bytes(dst_onnx, converted.SerializeToString())


__all__ = ["DEFAULT_KEEP_FP32_OPS", "convert_to_fp16", "logits_producer", "sort_topologically"]
