"""What can run here (the GPU, TensorRT's version, ONNX Runtime's providers), and the choice it leads to.

The choice of a variant is a plain function of the manifest and a :class:`RuntimeEnvironment`, so it is
testable anywhere; :func:`detect_environment` fills the latter from the machine.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from pointserve.engines.gpu import GpuInfo


@dataclass(frozen=True)
class RuntimeEnvironment:
    """What can run here: the GPU (if any), TensorRT's version (if installed), ONNX Runtime's providers."""

    gpu: GpuInfo | None = None
    tensorrt_version: str | None = None
    onnxruntime_providers: tuple[str, ...] = ()

    @property
    def has_ort_cuda(self) -> bool:
        return self.gpu is not None and "CUDAExecutionProvider" in self.onnxruntime_providers


@dataclass(frozen=True)
class Selection:
    """The variant to load, the backend to load it with, and why."""

    variant: str
    backend: str
    providers: tuple[str, ...] = ()
    reason: str = ""


def detect_environment(device_id: int = 0) -> RuntimeEnvironment:
    gpu = None
    trt_version = None
    providers: tuple[str, ...] = ()
    if importlib.util.find_spec("onnxruntime") is not None:
        from pointserve.engines.onnxruntime.runner import available_providers

        providers = tuple(available_providers())
    gpu_possible = "CUDAExecutionProvider" in providers or importlib.util.find_spec("tensorrt") is not None
    if gpu_possible:
        from pointserve.engines.gpu import current_gpu

        gpu = current_gpu(device_id)
    if gpu is not None and importlib.util.find_spec("tensorrt") is not None:
        from pointserve.engines.tensorrt.builder import tensorrt_version

        trt_version = tensorrt_version()
    return RuntimeEnvironment(gpu=gpu, tensorrt_version=trt_version, onnxruntime_providers=providers)


__all__ = ["RuntimeEnvironment", "Selection", "detect_environment"]
