"""Calibration sets and int8 Q/DQ quantization (the int8 variant TensorRT 11 builds from).

>>> from pointserve.calibration import build_calibration_set, quantize_int8
>>> calib = build_calibration_set(card, "repository/shapes-cls/1/calibration", num_samples=256, seed=0)
>>> result = quantize_int8("fp32.onnx", calib.path, "int8.onnx", method="minmax")
"""

from pointserve.calibration.dataset import CalibrationSet, build_calibration_set
from pointserve.calibration.qdq import QdqSummary, check_qdq_graph
from pointserve.calibration.quantize import METHODS, QuantizationResult, quantize_int8

__all__ = [
    "METHODS",
    "CalibrationSet",
    "QdqSummary",
    "QuantizationResult",
    "build_calibration_set",
    "check_qdq_graph",
    "quantize_int8",
]
