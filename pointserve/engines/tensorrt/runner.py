"""Native TensorRT backend: deserialises a plan and runs it on its own CUDA stream.

Per tuple of input shapes it allocates device and pinned host buffers once (an LRU cache of shapes), binds
them with ``set_tensor_address``, sets ``set_input_shape`` for every input and enqueues ``execute_async_v3``.
With ``cuda_graph=True`` the copy-in / execute / copy-out sequence of each shape is captured once and replayed
with one launch. ``tensorrt`` and ``cuda.bindings`` are imported in ``_load_impl``.

The runner takes the graph's named inputs (the manifest's specs) and gives every output by name. Inputs whose
first dimension is ``batch`` are padded up to the profile's minimum batch (the first row repeated) and outputs
whose first dimension is ``batch`` are cut back, so any batch from 1 runs. Shapes (PointNet, for example):
    points: (B, N, C) float32, category: (B,) int64 -> logits (B, K) or (B, N, P) float32
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pointserve.engines.base import InputLimits, Runner
from pointserve.engines.tensorrt.plan import (
    check_plan_compatible,
    output_spec_from_engine,
    pad_batch,
    profile_from_build_info,
    read_sidecar,
    unpad_outputs,
)
from pointserve.errors import EngineCompatibilityError, EngineError
from pointserve.models.spec import TensorSpec
from pointserve.repository.manifest import BuildInfo

log = logging.getLogger(__name__)

ShapeKey = tuple[tuple[int, ...], ...]


@dataclass
class _ShapeBuffers:
    """Everything bound for one tuple of input shapes: device buffers, pinned host mirrors, a CUDA graph."""

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
    ``<plan>.json`` sidecar) is checked against this GPU and TensorRT before deserialising.

    ``input_specs`` / ``output_specs``: the graph's (the manifest's). Without input specs the plan must take raw
    clouds, ``points`` (B, N, C) (+ ``category`` (B,)), read from its build record; without output specs they
    are read from the engine when it loads. ``limits`` default to the plan's profile (with ``value_bounds``).
    """

    backend = "tensorrt"

    def __init__(
        self,
        plan_path: str | Path,
        input_specs: Sequence[TensorSpec] | None = None,
        output_specs: Sequence[TensorSpec] | None = None,
        limits: InputLimits | None = None,
        *,
        build_info: BuildInfo | None = None,
        cuda_graph: bool = False,
        device_id: int = 0,
        max_cached_shapes: int = 8,
        value_bounds: Mapping[str, int] | None = None,
        name: str = "",
    ):
        self.plan_path = Path(plan_path)
        self.build_info = build_info or read_sidecar(self.plan_path)
        if self.build_info is None:
            raise EngineCompatibilityError(
                f"{self.plan_path}: no build record (manifest entry or {self.plan_path.name}.json sidecar)"
            )
        self.profile = profile_from_build_info(self.build_info, input_specs, self.plan_path)
        super().__init__(
            self.profile.inputs,
            output_specs or [],
            limits or self.profile.limits(value_bounds),
            name or f"tensorrt:{self.plan_path.name}",
        )
        self._outputs_given = output_specs is not None and len(output_specs) > 0
        self.cuda_graph = cuda_graph
        self.device_id = device_id
        self.max_cached_shapes = max_cached_shapes
        self.warnings: list[str] = []
        self._buffers: OrderedDict[ShapeKey, _ShapeBuffers] = OrderedDict()
        self._trt: Any = None
        self.engine: Any = None
        self.context: Any = None
        self.stream: Any = None
        self.engine_inputs: list[str] = []
        self.engine_outputs: list[str] = []

    # -- loading ------------------------------------------------------------------------------------------
    def _load_impl(self) -> None:
        from pointserve.engines.gpu import current_gpu
        from pointserve.engines.tensorrt.builder import import_tensorrt
        from pointserve.engines.tensorrt.cuda_rt import CudaStream, check, load_cudart

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
        self._trt = trt
        inputs, outputs = [], []
        for i in range(self.engine.num_io_tensors):
            tensor = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(tensor) == trt.TensorIOMode.INPUT
            (inputs if is_input else outputs).append(tensor)
        self._bind_io(inputs, outputs)
        self.context = self.engine.create_execution_context()
        self.stream = CudaStream()

    def _bind_io(self, inputs: list[str], outputs: list[str]) -> None:
        """Check the engine's tensors against the specs; read output specs from the engine when none were given."""
        if set(inputs) != set(self.input_names):
            raise EngineError(
                f"{self.plan_path}: the plan takes {sorted(inputs)}, the graph's inputs are {self.input_names}"
            )
        if self._outputs_given:
            missing = [n for n in self.output_names if n not in outputs]
            if missing:
                raise EngineError(f"{self.plan_path}: the plan gives {sorted(outputs)}, not {missing}")
        else:
            self.output_specs = [
                output_spec_from_engine(n, tuple(self.engine.get_tensor_shape(n)), self._dtype(n)) for n in outputs
            ]
        self.engine_inputs, self.engine_outputs = inputs, outputs

    # -- running ------------------------------------------------------------------------------------------
    def _dtype(self, tensor: str) -> np.dtype:
        return np.dtype(self._trt.nptype(self.engine.get_tensor_dtype(tensor)))

    def _set_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        for tensor, shape in shapes.items():
            if not self.context.set_input_shape(tensor, shape):
                raise EngineError(f"{self.plan_path}: shape {shape} of {tensor!r} is outside the plan's profile")

    def _key(self, shapes: Mapping[str, tuple[int, ...]]) -> ShapeKey:
        return tuple(tuple(shapes[name]) for name in self.engine_inputs)

    def _buffers_for(self, shapes: Mapping[str, tuple[int, ...]]) -> _ShapeBuffers:
        from pointserve.engines.tensorrt.cuda_rt import DeviceBuffer, PinnedArray

        key = self._key(shapes)
        if key in self._buffers:
            self._buffers.move_to_end(key)
            return self._buffers[key]
        if len(self._buffers) >= self.max_cached_shapes:
            _, oldest = self._buffers.popitem(last=False)
            self.stream.synchronize()
            oldest.free()
        self._set_shapes(shapes)
        context = self.context
        buffers = _ShapeBuffers()
        for tensor in [*self.engine_inputs, *self.engine_outputs]:
            shape = tuple(context.get_tensor_shape(tensor))
            if any(d < 0 for d in shape):
                raise EngineError(f"{self.plan_path}: shape of {tensor!r} unresolved for inputs {dict(shapes)}")
            buffers.host[tensor] = PinnedArray(shape, self._dtype(tensor))
            buffers.device[tensor] = DeviceBuffer(buffers.host[tensor].nbytes)
        self._buffers[key] = buffers
        return buffers

    def _enqueue(self, buffers: _ShapeBuffers) -> None:
        from pointserve.engines.tensorrt.cuda_rt import copy_device_to_host_async, copy_host_to_device_async

        for tensor in self.engine_inputs:
            copy_host_to_device_async(buffers.device[tensor], buffers.host[tensor], self.stream)
        if not self.context.execute_async_v3(self.stream.handle):
            raise EngineError(f"{self.plan_path}: execute_async_v3 failed")
        for tensor in self.engine_outputs:
            copy_device_to_host_async(buffers.host[tensor], buffers.device[tensor], self.stream)

    def _infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from pointserve.engines.tensorrt.cuda_rt import CudaGraph

        # Below the profile's minimum batch: repeat the first row of every batched input, drop its answers after.
        feeds, batch = pad_batch(feeds, self.input_specs, self.profile.min_batch)
        shapes = {name: tuple(feeds[name].shape) for name in self.engine_inputs}
        buffers = self._buffers_for(shapes)
        context = self.context
        # The context holds one shape at a time: re-state it and re-bind this shape's buffers.
        self._set_shapes(shapes)
        for tensor, buffer in buffers.device.items():
            context.set_tensor_address(tensor, buffer.ptr)
        for name in self.engine_inputs:
            host = buffers.host[name].array
            np.copyto(host, feeds[name].astype(host.dtype, copy=False))
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
        raw = {name: buffers.host[name].array for name in self.output_names}
        return unpad_outputs(raw, self.output_specs, batch)

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
