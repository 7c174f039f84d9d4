"""One timed query, split into the phases trtexec reports: the record (:class:`Phases`) and the host timer
every backend has. GPU backends add their own timer (``BackendSpec.timed_call``: ONNX Runtime's I/O binding in
:mod:`pointserve.engines.onnxruntime.phases`, TensorRT's CUDA events in :mod:`pointserve.engines.tensorrt.phases`).

On the host timer, *compute* is the runtime's own call (:attr:`Runner.last_inference_time_s`) and *enqueue*
the rest of :meth:`Runner.infer` on the host: input checks and conversion before the runtime is called.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from pointserve.engines.base import Runner

Feeds = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Phases:
    """Seconds spent in each phase of one query; the GPU phases are None on CPU backends."""

    enqueue_s: float
    compute_s: float | None = None
    h2d_s: float | None = None
    gpu_compute_s: float | None = None
    d2h_s: float | None = None


# One query: the graph's named inputs -> its phases.
TimedCall = Callable[[Feeds], Phases]


def host_timed_call(runner: Runner) -> TimedCall:
    """Time ``runner.infer(feeds)`` on the host: compute is the runtime's call, enqueue the rest."""

    def call(feeds: Feeds) -> Phases:
        start = time.perf_counter()
        runner.infer(feeds)
        total = time.perf_counter() - start
        compute = runner.last_inference_time_s or 0.0
        return Phases(enqueue_s=max(total - compute, 0.0), compute_s=compute)

    return call


__all__ = ["Feeds", "Phases", "TimedCall", "host_timed_call"]
