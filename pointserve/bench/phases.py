"""One timed query, split into the phases trtexec reports (the :class:`Phases` record lives in
:mod:`pointserve.engines.phases`).

Every backend gives the host latency of a query (what a caller waits). Beyond that each backend may time
its own phases (``BackendSpec.timed_call``):

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

from pointserve.engines import get_backend
from pointserve.engines.base import Runner
from pointserve.engines.phases import Feeds, Phases, TimedCall, host_timed_call
from pointserve.errors import ConfigError


def timed_call(runner: Runner, *, gpu_phases: bool = True) -> tuple[TimedCall, bool]:
    """A function running one query (``call(feeds) -> Phases``) on a loaded ``runner``, and whether it
    measures GPU phases: the backend's own timer when it has one that applies here, else the host timer."""
    if gpu_phases:
        try:
            spec = get_backend(runner.backend)
        except ConfigError:
            spec = None
        if spec is not None and spec.timed_call is not None:
            timed = spec.timed_call(runner)
            if timed is not None:
                return timed
    return host_timed_call(runner), False


__all__ = ["Feeds", "Phases", "TimedCall", "timed_call"]
