"""The device timer of ONNX Runtime on a GPU provider (CUDA or TensorRT EP): every named input is copied to
the GPU as an ``OrtValue`` (H2D), the session runs with I/O binding (GPU compute) and every output is copied
back (D2H), each timed on the host around a synchronous call."""

from __future__ import annotations

import time
from typing import Any

from pointserve.engines.phases import Feeds, Phases, TimedCall

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def timed_call(runner: Any) -> tuple[TimedCall, bool] | None:
    """``(call(feeds) -> Phases, True)`` for a loaded runner whose session runs on a GPU provider first;
    None on the CPU provider (the host timer applies)."""
    active = list(getattr(runner, "active_providers", []))
    if not active or active[0] not in GPU_PROVIDERS:
        return None
    return device_call(runner), True


def device_call(runner: Any) -> TimedCall:
    from pointserve.engines.onnxruntime.runner import import_onnxruntime

    ort = import_onnxruntime()
    session, device_id = runner.session, getattr(runner, "device_id", 0)
    output_names = list(runner.output_names)

    def call(feeds: Feeds) -> Phases:
        t0 = time.perf_counter()
        checked = runner.check_inputs(feeds)
        t1 = time.perf_counter()
        values = {name: ort.OrtValue.ortvalue_from_numpy(array, "cuda", device_id) for name, array in checked.items()}
        t2 = time.perf_counter()
        binding = session.io_binding()
        for name, value in values.items():
            binding.bind_ortvalue_input(name, value)
        for name in output_names:
            binding.bind_output(name, "cuda", device_id)
        t3 = time.perf_counter()
        session.run_with_iobinding(binding)
        t4 = time.perf_counter()
        binding.copy_outputs_to_cpu()
        t5 = time.perf_counter()
        return Phases(enqueue_s=(t1 - t0) + (t3 - t2), h2d_s=t2 - t1, gpu_compute_s=t4 - t3, d2h_s=t5 - t4)

    return call


__all__ = ["GPU_PROVIDERS", "device_call", "timed_call"]
