"""The ``int8-cpu`` variant: an int8 form for ONNX Runtime on x86 CPUs, next to the TensorRT-ready ``int8``.

Measured on this 2-core AVX2 machine (no VNNI; ``scripts/int8_cpu_forms.py``, docs/precision.md) on PointNet:

* **uint8 activations** (U8S8): MLAS's AVX2 int8 GEMM multiplies unsigned by signed bytes (``vpmaddubsw``). The
  TensorRT form's int8 activations (S8S8) in QOperator form ran at 0.24-0.37x fp32; in QDQ form ONNX Runtime
  converts them, but keeps more Q/DQ pairs (a third of the run time).
* **QOperator form** (QLinearConv, QLinearMatMul, QGemm written out), per-channel weights, asymmetric activations.
* **Max pooling over points as GlobalMaxPool**: ONNX Runtime runs QLinearConv channels-last (NHWC), so the
  network's ``ReduceMax`` over points becomes a reduction over a strided axis, 25-30x slower than over the
  contiguous one (13 ms instead of 0.5 ms for (8, 1024, 1024) uint8) and 30-35% of the whole run. As a
  ``GlobalMaxPool`` it becomes ONNX Runtime's channels-last max pool, vectorised over channels. Exactly the same
  values (max commutes with the monotonic dequantisation).

TensorRT does not take this graph as its int8 (asymmetric activations are not TensorRT's form); it is a CPU
variant and evaluated and benchmarked as its own. Calibration ranges, the calibration set and the nodes kept in
float are those of the ``int8`` variant, so the two differ only in form.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pointserve.errors import CalibrationError

CPU_INT8_VARIANT = "int8-cpu"


def max_pool_over_points(model: Any) -> dict[str, str]:
    """Rewrite ``ReduceMax(x (B, C, N), axes=[2 or -1])`` as ``GlobalMaxPool`` (+ ``Flatten`` when keepdims=0).

    ``model`` is an ``onnx.ModelProto`` (changed in place). Returns ``{new tensor: the ReduceMax output it
    equals}`` for the tensors the rewrite adds (their calibrated range is that of the output). Only rank-3
    reductions over the last axis qualify (what PointNet's max pooling is); others are left alone.
    """
    from onnx import helper, numpy_helper, shape_inference

    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    inferred = shape_inference.infer_shapes(model)
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in [*inferred.graph.value_info, *graph.input]}
    aliases: dict[str, str] = {}
    nodes = []
    for node in graph.node:
        axes = constants.get(node.input[1]) if node.op_type == "ReduceMax" and len(node.input) > 1 else None
        if axes is None or ranks.get(node.input[0]) != 3 or [int(a) for a in axes.ravel()] not in ([2], [-1]):
            nodes.append(node)
            continue
        keepdims = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        pooled = node.output[0] if keepdims else f"{node.output[0]}_global_max"
        nodes.append(helper.make_node("GlobalMaxPool", [node.input[0]], [pooled], name=f"{node.name}_global_max"))
        if not keepdims:
            nodes.append(helper.make_node("Flatten", [pooled], [node.output[0]], name=f"{node.name}_flatten", axis=1))
            aliases[pooled] = node.output[0]
    del graph.node[:]
    graph.node.extend(nodes)
    return aliases


def quantize_int8_cpu(
    src_onnx: str | Path,
    ranges_file: str | Path,
    dst_onnx: str | Path,
    *,
    method: str = "minmax",
    exclude_nodes: Sequence[str] = (),
) -> Path:
    """Write ``dst_onnx``: ``src_onnx`` (fp32) in the CPU int8 form, from already calibrated ranges.

    ``ranges_file`` is the scale cache the ``int8`` variant was quantized with (onnxruntime's ``TensorsData``
    JSON, :func:`pointserve.calibration.quantize.quantize_int8`'s ``cache_path``) of calibration ``method``:
    no calibration inference runs.
    ``exclude_nodes`` stay in float (the int8 variant's choice).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from pointserve.calibration.quantize import _calibration_method, _quiet_onnxruntime, _restore_io
    from pointserve.repository.store import atomic_write_bytes

    src_onnx, dst_onnx = Path(src_onnx), Path(dst_onnx)
    source = onnx.load(str(src_onnx))
    with tempfile.TemporaryDirectory(prefix="pointserve-int8-cpu-") as tmp:
        pooled = Path(tmp) / "fp32-global-max.onnx"
        rewritten = onnx.ModelProto()
        rewritten.CopyFrom(source)  # the rewrite works on a copy: `source` still gives the graph's I/O types
        aliases = max_pool_over_points(rewritten)
        onnx.save(rewritten, str(pooled))
        try:
            ranges = json.loads(Path(ranges_file).read_text())
            for new, old in aliases.items():
                ranges["data"][new] = ranges["data"][old]
        except (OSError, ValueError, KeyError) as exc:
            raise CalibrationError(f"{ranges_file}: not a usable int8 range cache ({exc!r})") from None
        cache = Path(tmp) / "ranges.json"
        cache.write_text(json.dumps(ranges))
        out = Path(tmp) / "int8-cpu.onnx"
        try:
            with _quiet_onnxruntime():
                quantize_static(
                    str(pooled),
                    str(out),
                    calibration_data_reader=None,  # the ranges come from the cache
                    quant_format=QuantFormat.QOperator,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    nodes_to_exclude=list(exclude_nodes),
                    extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
                    calibrate_method=_calibration_method(method),
                    calibration_cache_path=str(cache),
                )
        except Exception as exc:  # onnxruntime raises ValueError/RuntimeError/Fail
            raise CalibrationError(f"int8-cpu quantization of {src_onnx} failed: {exc}") from None
        model = onnx.load(str(out))
        _restore_io(model, source)
        atomic_write_bytes(dst_onnx, model.SerializeToString())
    return dst_onnx


__all__ = ["CPU_INT8_VARIANT", "max_pool_over_points", "quantize_int8_cpu"]
