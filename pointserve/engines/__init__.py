"""Engines: one :class:`Runner` protocol, backends onnxruntime (CPU / CUDA / TensorRT EP), native TensorRT and
torch (the reference), the TensorRT builder, and the choice of the best runnable variant.

Importing this package imports no runtime (torch, onnxruntime, tensorrt, cuda): each backend imports its
own when a runner loads.

    >>> from pointserve.engines import create_runner
    >>> with create_runner(Repository("repository").open("shapes-cls")) as runner:
    ...     logits = runner.infer(points)          # (B, N, 3) float32 -> (B, K)
"""

from pointserve.engines.base import InputLimits, Runner
from pointserve.engines.selection import (
    RuntimeEnvironment,
    Selection,
    create_runner,
    detect_environment,
    limits_for_card,
    select_variant,
    torch_runner_for,
)

__all__ = [
    "InputLimits",
    "Runner",
    "RuntimeEnvironment",
    "Selection",
    "create_runner",
    "detect_environment",
    "limits_for_card",
    "select_variant",
    "torch_runner_for",
]
