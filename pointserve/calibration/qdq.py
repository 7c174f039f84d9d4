"""Checks that a Q/DQ graph is one TensorRT 11 accepts and builds as intended.

* every QuantizeLinear / DequantizeLinear has an explicit int8 zero point equal to 0 (symmetric);
* no DequantizeLinear reads an int32 tensor (quantized biases, which TensorRT's ONNX parser rejects);
* weights of Conv / Gemm / MatMul are quantized per channel (a 1-D scale and an ``axis``);
* activations are quantized per tensor (a scalar scale).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pointserve.errors import CalibrationError

if TYPE_CHECKING:
    import onnx

WEIGHT_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")


@dataclass(frozen=True)
class QdqSummary:
    quantize_nodes: int
    dequantize_nodes: int
    per_channel_weights: int
    per_tensor_activations: int


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(attribute.i)
    return default


def check_qdq_graph(model: onnx.ModelProto | str | Path) -> QdqSummary:
    """Raise :class:`CalibrationError` naming the first node that breaks a rule above; else a summary."""
    import onnx
    from onnx import numpy_helper

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(attribute.t)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    quantize = dequantize = per_channel = per_tensor = 0
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        where = f"{node.op_type} {node.name or node.output[0]!r}"
        if len(node.input) < 3 or node.input[2] not in constants:
            raise CalibrationError(f"{where} has no constant zero point (the default would be uint8)")
        zero_point = constants[node.input[2]]
        if zero_point.dtype.name != "int8":
            raise CalibrationError(f"{where} has a {zero_point.dtype} zero point; TensorRT needs int8")
        if zero_point.any():
            raise CalibrationError(f"{where} has a non-zero zero point (asymmetric quantization)")
        scale = constants.get(node.input[1])
        if scale is None:
            raise CalibrationError(f"{where} has no constant scale")
        if node.op_type == "QuantizeLinear":
            quantize += 1
        else:
            dequantize += 1
            x = constants.get(node.input[0])
            if x is not None and x.dtype.name == "int32":
                raise CalibrationError(f"{where} dequantizes an int32 tensor (a quantized bias); TensorRT rejects it")
            feeds_weight_op = any(c.op_type in WEIGHT_OPS for c in consumers.get(node.output[0], []))
            if x is not None and x.ndim >= 2 and feeds_weight_op:
                axis = _attr(node, "axis", 1)
                if scale.ndim != 1 or scale.shape[0] != x.shape[axis]:
                    raise CalibrationError(f"{where}: weight {node.input[0]!r} is not quantized per channel")
                per_channel += 1
                continue
        if node.input[0] not in constants:
            if scale.ndim != 0 and scale.size != 1:
                raise CalibrationError(f"{where}: activation {node.input[0]!r} has a per-channel scale")
            per_tensor += 1
    if quantize == 0 or dequantize == 0:
        raise CalibrationError("the graph has no QuantizeLinear/DequantizeLinear nodes: it is not quantized")
    return QdqSummary(quantize, dequantize, per_channel, per_tensor)


__all__ = ["QdqSummary", "check_qdq_graph"]
