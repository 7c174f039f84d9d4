"""Torch -> ONNX export, the parity check against PyTorch, and the fp16 graph conversion.

>>> from pointserve.export import export_onnx, convert_to_fp16
>>> report = export_onnx("runs/shapes-cls", "fp32.onnx")       # parity checked, recorded in the report
>>> convert_to_fp16("fp32.onnx", "fp16.onnx")                   # fp32 inputs and outputs kept

Importing this package does not import torch; :func:`export_onnx` does when it runs.
"""

from pointserve.export.fp16 import DEFAULT_KEEP_FP32_OPS, convert_to_fp16
from pointserve.export.onnx_export import ExportReport, export_model, export_onnx, io_specs
from pointserve.export.parity import ParityResult, check_parity

__all__ = [
    "DEFAULT_KEEP_FP32_OPS",
    "ExportReport",
    "ParityResult",
    "check_parity",
    "convert_to_fp16",
    "export_model",
    "export_onnx",
    "io_specs",
]
