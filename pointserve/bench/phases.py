"""One timed query, split into the phases trtexec reports.

Every backend gives the host latency of a query (what a caller waits). Beyond that:

* CPU backends (ONNX Runtime CPU, torch): *compute* is the runtime's own call
  (:attr:`Runner.last_inference_time_s`); *enqueue* is the rest of :meth:`Runner.infer` on the host — input
  checks and conversion before the runtime is called.
* ONNX Runtime on CUDA / TensorRT EP: inputs are copied to the GPU as ``OrtValue`` s (H2D), the session runs
  with I/O binding (GPU compute), outputs are copied back (D2H) — each timed on the host around a
  synchronous call.
* Native TensorRT: CUDA events recorded on the runner's stream between the H2D copies,
  ``execute_async_v3`` and the D2H copies (the GPU's own clock); *enqueue* is the host time of the
  ``execute_async_v3`` call, as in trtexec.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pointserve.engines.base import Runner

_GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


@dataclass(frozen=True)
class Phases:
    """Seconds spent in each phase of one query; the GPU phases are None on CPU backends."""

    enqueue_s: float
    compute_s: float | None = None
    h2d_s: float | None = None
    gpu_compute_s: float | None = None
    d2h_s: float | None = None


TimedCall = Callable[[np.ndarray, "np.ndarray | None"], Phases]


def timed_call(runner: Runner, *, gpu_phases: bool = True) -> tuple[TimedCall, bool]:
    """A function running one query on a loaded ``runner`` and returning its :class:`Phases`, and whether
    it measures GPU phases."""
    if gpu_phases and runner.backend == "tensorrt" and not getattr(runner, "cuda_graph", False):
        return _tensorrt_call(runner), True
    if gpu_phases and runner.backend == "onnxruntime":
        active = list(getattr(runner, "active_providers", []))
        if active and active[0] in _GPU_PROVIDERS:
            return _ort_device_call(runner), True
    return _host_call(runner), False


def _host_call(runner: Runner) -> TimedCall:
    def call(points: np.ndarray, category: np.ndarray | None) -> Phases:
        start = time.perf_counter()
        runner.infer(points, category)
        total = time.perf_counter() - start
        compute = runner.last_inference_time_s or 0.0
        return Phases(enqueue_s=max(total - compute, 0.0), compute_s=compute)

    return call


def _ort_device_call(runner: Any) -> TimedCall:
    from pointserve.engines.onnxruntime import import_onnxruntime

    ort = import_onnxruntime()
    session, device_id = runner.session, getattr(runner, "device_id", 0)

    def call(points: np.ndarray, category: np.ndarray | None) -> Phases:
        t0 = time.perf_counter()
        points, category = runner.check_inputs(points, category)
        t1 = time.perf_counter()
        values = {runner.points_name: ort.OrtValue.ortvalue_from_numpy(points, "cuda", device_id)}
        if runner.category_name is not None:
            values[runner.category_name] = ort.OrtValue.ortvalue_from_numpy(category, "cuda", device_id)
        t2 = time.perf_counter()
        binding = session.io_binding()
        for name, value in values.items():
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(runner.output_name, "cuda", device_id)
        t3 = time.perf_counter()
        session.run_with_iobinding(binding)
        t4 = time.perf_counter()
        binding.copy_outputs_to_cpu()
        t5 = time.perf_counter()
        return Phases(enqueue_s=(t1 - t0) + (t3 - t2), h2d_s=t2 - t1, gpu_compute_s=t4 - t3, d2h_s=t5 - t4)

    return call


def _tensorrt_call(runner: Any) -> TimedCall:
    """Record CUDA events around the runner's copies and ``execute_async_v3``.

    The runner's own ``_enqueue`` (H2D copies, execute, D2H copies) is replaced on this instance by the
    same three steps with an event between each; the runner still chooses buffers, shapes and padding.
    """
    from pointserve.engines.cuda_rt import (
        check,
        copy_device_to_host_async,
        copy_host_to_device_async,
        load_cudart,
    )
    from pointserve.errors import EngineError

    cudart = load_cudart()
    events = [check(cudart.cudaEventCreate(), "cudaEventCreate") for _ in range(4)]
    host_enqueue = [0.0]

    def enqueue(buffers: Any) -> None:
        stream = runner.stream
        check(cudart.cudaEventRecord(events[0], stream.stream), "cudaEventRecord")
        for tensor in runner.inputs:
            copy_host_to_device_async(buffers.device[tensor], buffers.host[tensor], stream)
        check(cudart.cudaEventRecord(events[1], stream.stream), "cudaEventRecord")
        start = time.perf_counter()
        if not runner.context.execute_async_v3(stream.handle):
            raise EngineError(f"{runner.plan_path}: execute_async_v3 failed")
        host_enqueue[0] = time.perf_counter() - start
        check(cudart.cudaEventRecord(events[2], stream.stream), "cudaEventRecord")
        for tensor in runner.outputs:
            copy_device_to_host_async(buffers.host[tensor], buffers.device[tensor], stream)
        check(cudart.cudaEventRecord(events[3], stream.stream), "cudaEventRecord")

    runner._enqueue = enqueue  # instance attribute: only this runner is instrumented

    def elapsed_s(a: Any, b: Any) -> float:
        return float(check(cudart.cudaEventElapsedTime(a, b), "cudaEventElapsedTime")) / 1e3

    def call(points: np.ndarray, category: np.ndarray | None) -> Phases:
        runner.infer(points, category)  # synchronises the stream before it returns
        return Phases(
            enqueue_s=host_enqueue[0],
            h2d_s=elapsed_s(events[0], events[1]),
            gpu_compute_s=elapsed_s(events[1], events[2]),
            d2h_s=elapsed_s(events[2], events[3]),
        )

    return call


__all__ = ["Phases", "TimedCall", "timed_call"]
