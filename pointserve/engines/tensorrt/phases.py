"""The device timer of native TensorRT: CUDA events recorded on the runner's stream between the H2D copies,
``execute_async_v3`` and the D2H copies (the GPU's own clock); *enqueue* is the host time of the
``execute_async_v3`` call, as in trtexec. CUDA-graph replay records no events between its steps, so a
runner with ``cuda_graph`` is timed on the host."""

from __future__ import annotations

import time
from typing import Any

from pointserve.engines.phases import Feeds, Phases, TimedCall


def timed_call(runner: Any) -> tuple[TimedCall, bool] | None:
    """``(call(feeds) -> Phases, True)`` for a loaded TensorRT runner; None with CUDA graphs (host timer)."""
    if getattr(runner, "cuda_graph", False):
        return None
    return event_call(runner), True


def event_call(runner: Any) -> TimedCall:
    """Record CUDA events around the runner's copies and ``execute_async_v3``.

    The runner's own ``_enqueue`` (H2D copies, execute, D2H copies) is replaced on this instance by the
    same three steps with an event between each; the runner still chooses buffers, shapes and padding.
    """
    from pointserve.engines.tensorrt.cuda_rt import (
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
        for tensor in runner.engine_inputs:
            copy_host_to_device_async(buffers.device[tensor], buffers.host[tensor], stream)
        check(cudart.cudaEventRecord(events[1], stream.stream), "cudaEventRecord")
        start = time.perf_counter()
        if not runner.context.execute_async_v3(stream.handle):
            raise EngineError(f"{runner.plan_path}: execute_async_v3 failed")
        host_enqueue[0] = time.perf_counter() - start
        check(cudart.cudaEventRecord(events[2], stream.stream), "cudaEventRecord")
        for tensor in runner.engine_outputs:
            copy_device_to_host_async(buffers.host[tensor], buffers.device[tensor], stream)
        check(cudart.cudaEventRecord(events[3], stream.stream), "cudaEventRecord")

    runner._enqueue = enqueue  # instance attribute: only this runner is instrumented

    def elapsed_s(a: Any, b: Any) -> float:
        return float(check(cudart.cudaEventElapsedTime(a, b), "cudaEventElapsedTime")) / 1e3

    def call(feeds: Feeds) -> Phases:
        runner.infer(feeds)  # synchronises the stream before it returns
        return Phases(
            enqueue_s=host_enqueue[0],
            h2d_s=elapsed_s(events[0], events[1]),
            gpu_compute_s=elapsed_s(events[1], events[2]),
            d2h_s=elapsed_s(events[2], events[3]),
        )

    return call


__all__ = ["event_call", "timed_call"]
