"""Small wrappers over NVIDIA's cuda-python runtime bindings (``cuda.bindings.runtime``).

Why cuda-python and not pycuda: it ships binary wheels (no CUDA toolkit, no compiler), is NVIDIA's
maintained binding, and is what TensorRT's own Python samples use — see docs/gpu.md. Every call returns
``(cudaError_t, *values)``; :func:`check` turns a failure into an :class:`EngineError` naming the call.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from pointserve.errors import BackendUnavailableError, EngineError


def load_cudart() -> Any:
    """The runtime bindings module; :class:`BackendUnavailableError` when cuda-python is not installed."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python layout
        except ImportError:
            raise BackendUnavailableError(
                "CUDA runtime bindings not installed: pip install 'cuda-python>=12' (or pointserve[gpu])"
            ) from None
    return cudart


def check(result: Any, what: str) -> Any:
    """Unwrap ``(err, value...)``; raise naming ``what`` unless ``err`` is cudaSuccess."""
    cudart = load_cudart()
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if err != cudart.cudaError_t.cudaSuccess:
        _, message = cudart.cudaGetErrorString(err)
        text = message.decode() if isinstance(message, bytes) else str(message)
        raise EngineError(f"CUDA call {what} failed: {getattr(err, 'name', err)}: {text}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


class CudaStream:
    """A non-default CUDA stream owned by one runner."""

    def __init__(self) -> None:
        self._cudart = load_cudart()
        self.stream = check(self._cudart.cudaStreamCreate(), "cudaStreamCreate")

    @property
    def handle(self) -> int:
        return int(self.stream)

    def synchronize(self) -> None:
        check(self._cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def destroy(self) -> None:
        if self.stream is not None:
            check(self._cudart.cudaStreamDestroy(self.stream), "cudaStreamDestroy")
            self.stream = None


class DeviceBuffer:
    """``nbytes`` of device memory."""

    def __init__(self, nbytes: int) -> None:
        self._cudart = load_cudart()
        self.nbytes = int(nbytes)
        self.ptr = int(check(self._cudart.cudaMalloc(max(self.nbytes, 1)), f"cudaMalloc({self.nbytes})"))

    def free(self) -> None:
        if self.ptr:
            check(self._cudart.cudaFree(self.ptr), "cudaFree")
            self.ptr = 0


class PinnedArray:
    """A page-locked host array (needed for truly asynchronous copies and for CUDA-graph capture)."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._cudart = load_cudart()
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        self.ptr = int(check(self._cudart.cudaMallocHost(max(nbytes, 1)), f"cudaMallocHost({nbytes})"))
        raw = (ctypes.c_byte * max(nbytes, 1)).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    @property
    def nbytes(self) -> int:
        return self.array.nbytes

    def free(self) -> None:
        if self.ptr:
            self.array = None  # drop the view before the memory goes
            check(self._cudart.cudaFreeHost(self.ptr), "cudaFreeHost")
            self.ptr = 0


def copy_host_to_device_async(dst: DeviceBuffer, src: PinnedArray, stream: CudaStream) -> None:
    cudart = load_cudart()
    kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
    check(cudart.cudaMemcpyAsync(dst.ptr, src.ptr, src.nbytes, kind, stream.stream), "cudaMemcpyAsync(H2D)")


def copy_device_to_host_async(dst: PinnedArray, src: DeviceBuffer, stream: CudaStream) -> None:
    cudart = load_cudart()
    kind = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
    check(cudart.cudaMemcpyAsync(dst.ptr, src.ptr, dst.nbytes, kind, stream.stream), "cudaMemcpyAsync(D2H)")


class CudaGraph:
    """Captures the work a callable enqueues on ``stream`` once, then replays it with one launch."""

    def __init__(self, stream: CudaStream) -> None:
        self._cudart = load_cudart()
        self.stream = stream
        self.graph = None
        self.graph_exec = None

    def capture(self, enqueue) -> None:
        cudart = self._cudart
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(cudart.cudaStreamBeginCapture(self.stream.stream, mode), "cudaStreamBeginCapture")
        try:
            enqueue()
        finally:
            self.graph = check(cudart.cudaStreamEndCapture(self.stream.stream), "cudaStreamEndCapture")
        self.graph_exec = check(cudart.cudaGraphInstantiate(self.graph, 0), "cudaGraphInstantiate")

    def launch(self) -> None:
        check(self._cudart.cudaGraphLaunch(self.graph_exec, self.stream.stream), "cudaGraphLaunch")

    def destroy(self) -> None:
        if self.graph_exec is not None:
            check(self._cudart.cudaGraphExecDestroy(self.graph_exec), "cudaGraphExecDestroy")
            self.graph_exec = None
        if self.graph is not None:
            check(self._cudart.cudaGraphDestroy(self.graph), "cudaGraphDestroy")
            self.graph = None


def driver_version() -> str | None:
    """The CUDA driver version as ``"12.4"``, or None without driver/bindings."""
    try:
        cudart = load_cudart()
        version = check(cudart.cudaDriverGetVersion(), "cudaDriverGetVersion")
    except (BackendUnavailableError, EngineError):
        return None
    return f"{version // 1000}.{(version % 1000) // 10}"


__all__ = [
    "CudaGraph",
    "CudaStream",
    "DeviceBuffer",
    "PinnedArray",
    "check",
    "copy_device_to_host_async",
    "copy_host_to_device_async",
    "driver_version",
    "load_cudart",
]
