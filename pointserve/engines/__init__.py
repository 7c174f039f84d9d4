"""Engines: one :class:`Runner` protocol and one folder per runtime — ``onnxruntime`` (CPU / CUDA / TensorRT EP),
``tensorrt`` (native plans) and ``torch`` (the reference) — each registering a :class:`BackendSpec`; the
choice of the best runnable variant iterates that registry.

Importing this package imports no runtime (torch, onnxruntime, tensorrt, cuda): each backend imports its
own when a runner loads.

    >>> from pointserve.engines import create_runner
    >>> with create_runner(Repository("repository").open("shapes-cls")) as runner:
    ...     outputs = runner.infer({"points": points})          # (B, N, 3) float32 -> {"logits": (B, K)}
"""

from pointserve.engines import onnxruntime, tensorrt, torch  # noqa: F401  (register the backends)
from pointserve.engines.backends import BackendSpec, get_backend, list_backends
from pointserve.engines.base import InputLimits, Runner
from pointserve.engines.environment import RuntimeEnvironment, Selection, detect_environment
from pointserve.engines.selection import create_runner, limits_for_card, select_variant, torch_runner_for

__all__ = [
    "BackendSpec",
    "InputLimits",
    "Runner",
    "RuntimeEnvironment",
    "Selection",
    "create_runner",
    "detect_environment",
    "get_backend",
    "limits_for_card",
    "list_backends",
    "select_variant",
    "torch_runner_for",
]
