"""Native TensorRT backend: deserialises a plan and runs it on its own CUDA stream.

Per input shape (B, N) it allocates device and pinned host buffers once (an LRU cache of shapes), binds
them with ``set_tensor_address``, sets ``set_input_shape`` and enqueues ``execute_async_v3``. With
``cuda_graph=True`` the copy-in / execute / copy-out sequence of each shape is captured once and replayed
with one launch. ``tensorrt`` and ``cuda.bindings`` are imported in ``_load_impl``.

Shapes:
    points: (B, N, C) float32, category: (B,) int64 -> logits (B, K) or (B, N, P) float32
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pointserve.engines.base import InputLimits, Runner
from pointserve.engines.trt_plan import check_plan_compatible, profile_from_build_info, read_sidecar
from pointserve.errors import EngineCompatibilityError, EngineError
from pointserve.repository.manifest import BuildInfo

log = logging.getLogger(__name__)


@dataclass
class _ShapeBuffers:
    """Everything bound for one (B, N): device buffers, pinned host mirrors, an optional CUDA graph."""

    device: dict[str, Any] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)
    graph: Any = None
    runs: int = 0

    def free(self) -> None:
        if self.graph is not None:
            self.graph.destroy()
        for buffer in [*self.device.values(), *self.host.values()]:
            buffer.free()


class TensorRTRunner(Runner):
    """Runs a ``.plan``. The plan's build record (``build_info`` from the manifest, else the
    ``<plan>.json`` sidecar) is checked against this GPU and TensorRT before deserialising."""

    backend = "tensorrt"

    def __init__(
        self,
        plan_path: str | Path,
        limits: InputLimits | None = None,
        *,
        build_info: BuildInfo | None = None,
        cuda_graph: bool = False,
        device_id: int = 0,
        max_cached_shapes: int = 8,
        num_categories: int = 0,
        name: str = "",
    ):
        self.plan_path = Path(plan_path)
        self.build_info = build_info or read_sidecar(self.plan_path)
        if self.build_info is None:
            raise EngineCompatibilityError(
                f"{self.plan_path}: no build record (manifest entry or {self.plan_path.name}.json sidecar)"
            )
        self.profile = profile_from_build_info(self.build_info)
        super().__init__(limits or self.profile.limits(num_categories), name or f"tensorrt:{self.plan_path.name}")
        self.cuda_graph = cuda_graph
        self.device_id = device_id
        self.max_cached_shapes = max_cached_shapes
        self.warnings: list[str] = []
        self._buffers: OrderedDict[tuple[int, int], _ShapeBuffers] = OrderedDict()
        self._trt: Any = None
        self.engine: Any = None
        self.context: Any = None
        self.stream: Any = None

    # -- loading ------------------------------------------------------------------------------------------
    def _load_impl(self) -> None:
        from pointserve.engines.cuda_rt import CudaStream, check, load_cudart
        from pointserve.engines.gpu import current_gpu
        from pointserve.engines.trt_builder import import_tensorrt

        trt = import_tensorrt()
        self.warnings = check_plan_compatible(
            self.build_info, current_gpu(self.device_id), trt.__version__, self.plan_path
        )
        for warning in self.warnings:
            log.warning(warning)
        check(load_cudart().cudaSetDevice(self.device_id), "cudaSetDevice")
        if not self.plan_path.is_file():
            raise EngineError(f"{self.plan_path}: plan file not found")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if self.engine is None:
            raise EngineCompatibilityError(f"{self.plan_path}: TensorRT could not deserialise the plan (see log)")
        self.context = self.engine.create_execution_context()
        self._trt = trt
        self.inputs, self.outputs = [], []
        for i in range(self.engine.num_io_tensors):
            tensor = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(tensor) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(tensor)
        self.points_name = next(n for n in self.inputs if len(self.engine.get_tensor_shape(n)) == 3)
        self.category_name = next((n for n in self.inputs if n != self.points_name), None)
        self.output_name = "logits" if "logits" in self.outputs else self.outputs[0]
        self.stream = CudaStream()

    # -- running ------------------------------------------------------------------------------------------
    def _dtype(self, tensor: str) -> np.dtype:
        return np.dtype(self._trt.nptype(self.engine.get_tensor_dtype(tensor)))

    def _set_shapes(self, batch: int, num_points: int) -> None:
        shapes = {self.points_name: (batch, num_points, self.profile.channels)}
        if self.category_name is not None:
            shapes[self.category_name] = (batch,)
        for tensor, shape in shapes.items():
            if not self.context.set_input_shape(tensor, shape):
                raise EngineError(f"{self.plan_path}: shape {shape} of {tensor!r} is outside the plan's profile")

    def _buffers_for(self, batch: int, num_points: int) -> _ShapeBuffers:
        from pointserve.engines.cuda_rt import DeviceBuffer, PinnedArray

        key = (batch, num_points)
        if key in self._buffers:
            self._buffers.move_to_end(key)
            return self._buffers[key]
        if len(self._buffers) >= self.max_cached_shapes:
            _, oldest = self._buffers.popitem(last=False)
            self.stream.synchronize()
            oldest.free()
        self._set_shapes(batch, num_points)
        context = self.context
        buffers = _ShapeBuffers()
        for tensor in [*self.inputs, *self.outputs]:
            shape = tuple(context.get_tensor_shape(tensor))
            if any(d < 0 for d in shape):
                raise EngineError(
                    f"{self.plan_path}: shape of {tensor!r} unresolved for batch {batch}, {num_points} points"
                )
            buffers.host[tensor] = PinnedArray(shape, self._dtype(tensor))
            buffers.device[tensor] = DeviceBuffer(buffers.host[tensor].nbytes)
        self._buffers[key] = buffers
        return buffers

    def _enqueue(self, buffers: _ShapeBuffers) -> None:
        from pointserve.engines.cuda_rt import copy_device_to_host_async, copy_host_to_device_async

        for tensor in self.inputs:
            copy_host_to_device_async(buffers.device[tensor], buffers.host[tensor], self.stream)
        if not self.context.execute_async_v3(self.stream.handle):
            raise EngineError(f"{self.plan_path}: execute_async_v3 failed")
        for tensor in self.outputs:
            copy_device_to_host_async(buffers.host[tensor], buffers.device[tensor], self.stream)

    def _infer_impl(self, points: np.ndarray, category: np.ndarray | None) -> np.ndarray:
        from pointserve.engines.cuda_rt import CudaGraph

        batch = points.shape[0]
        padded = max(batch, self.profile.min_batch)
        if padded > batch:  # below the profile's minimum: repeat the first cloud, drop its answers after
            points = np.concatenate([points, np.repeat(points[:1], padded - batch, axis=0)])
            if category is not None:
                category = np.concatenate([category, np.repeat(category[:1], padded - batch)])
        buffers = self._buffers_for(padded, points.shape[1])
        context = self.context
        # The context holds one shape at a time: re-state it and re-bind this shape's buffers.
        self._set_shapes(padded, points.shape[1])
        for tensor, buffer in buffers.device.items():
            context.set_tensor_address(tensor, buffer.ptr)
        np.copyto(buffers.host[self.points_name].array, points.astype(buffers.host[self.points_name].array.dtype))
        if self.category_name is not None:
            host = buffers.host[self.category_name].array
            np.copyto(host, category.astype(host.dtype))
        if self.cuda_graph and buffers.graph is not None:
            buffers.graph.launch()
        elif self.cuda_graph and buffers.runs >= 1:
            # TensorRT allocates lazily on the first run of a shape, so capture from the second run on.
            graph = CudaGraph(self.stream)
            graph.capture(lambda: self._enqueue(buffers))
            buffers.graph = graph
            graph.launch()
        else:
            self._enqueue(buffers)
        self.stream.synchronize()
        buffers.runs += 1
        return np.array(buffers.host[self.output_name].array[:batch], dtype=np.float32)

    def _close_impl(self) -> None:
        if self.stream is not None:
            self.stream.synchronize()
        for buffers in self._buffers.values():
            buffers.free()
        self._buffers.clear()
        self.context = None
        self.engine = None
        if self.stream is not None:
            self.stream.destroy()
            self.stream = None


__all__ = ["TensorRTRunner"]
