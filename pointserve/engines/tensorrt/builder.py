"""Build a TensorRT plan from an ONNX variant (TensorRT 10/11 Python API).

The network is strongly typed (TensorRT 11 knows no other kind; on 10 the flag is set explicitly): fp16
and int8 come from the ONNX graph (fp16 tensors, Q/DQ nodes), never from builder flags. The one precision
choice left to the builder is TF32 for fp32 math — on by default in TensorRT, so it is *cleared* for fp32
builds and set for tf32 builds. ``tensorrt`` is imported inside the functions.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pointserve.engines.gpu import GpuInfo, current_gpu
from pointserve.engines.tensorrt.plan import (
    DEFAULT_WORKSPACE_MIB,
    ShapeProfile,
    builder_flags_for,
    make_build_info,
    write_sidecar,
)
from pointserve.errors import BackendUnavailableError, EngineError
from pointserve.repository.manifest import BuildInfo


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise BackendUnavailableError(
            "TensorRT is not installed (pip install tensorrt on a machine with an NVIDIA GPU); "
            "the onnxruntime backend serves the same ONNX variants without it"
        ) from None
    return tensorrt


def tensorrt_version() -> str | None:
    try:
        return str(import_tensorrt().__version__)
    except BackendUnavailableError:
        return None


def _network_flags(trt: Any) -> int:
    # TensorRT 11: strongly typed always, the flag is deprecated and ignored; TensorRT 10: must be asked for.
    major = int(str(trt.__version__).split(".")[0])
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if major >= 11 or flag is None else 1 << int(flag)


def _parse_onnx(trt: Any, network: Any, logger: Any, onnx_path: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        raise EngineError(f"{onnx_path}: TensorRT's ONNX parser rejected the graph: {'; '.join(errors) or 'unknown'}")


def _add_profile(builder: Any, network: Any, config: Any, profile: ShapeProfile, onnx_path: Path) -> None:
    """One optimisation profile: the profile's (min, opt, max) shape of every network input, by name."""
    optimisation = builder.create_optimization_profile()
    shapes = profile.shapes()
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    unknown = [name for name in names if name not in shapes]
    missing = [name for name in shapes if name not in names]
    if unknown or missing:
        raise EngineError(
            f"{onnx_path}: the graph takes {names}, the profile sizes {list(shapes)}"
            + (f"; no profile for {unknown}" if unknown else "")
            + (f"; the graph has no input {missing}" if missing else "")
        )
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        lo, opt, hi = shapes[tensor.name]
        graph_shape = tuple(tensor.shape)
        if len(graph_shape) != len(lo) or any(d >= 0 and d != s for d, s in zip(graph_shape, hi, strict=True)):
            raise EngineError(f"{onnx_path}: input {tensor.name!r} has shape {graph_shape}, the profile's is {hi}")
        optimisation.set_shape(tensor.name, lo, opt, hi)
    config.add_optimization_profile(optimisation)


def engine_from_onnx(
    onnx_path: str | Path,
    plan_path: str | Path,
    precision: str,
    profile: ShapeProfile,
    workspace_mib: int = DEFAULT_WORKSPACE_MIB,
    timing_cache_path: str | Path | None = None,
    *,
    gpu: GpuInfo | None = None,
    verbose: bool = False,
) -> BuildInfo:
    """Build and save a plan for ``precision`` from ``onnx_path``; returns (and writes next to the plan as
    ``<plan>.json``) the record of what it was built for. The timing cache at ``timing_cache_path`` is
    loaded when present and saved back after the build, so later builds skip re-timing known layers."""
    from pointserve.engines.tensorrt.cuda_rt import driver_version
    from pointserve.repository.store import atomic_write_bytes

    trt = import_tensorrt()
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    gpu = gpu or current_gpu()
    if gpu is None:
        raise BackendUnavailableError("building a TensorRT plan needs an NVIDIA GPU; none is visible")
    flags = builder_flags_for(precision)
    start = time.perf_counter()

    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    _parse_onnx(trt, network, logger, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if tf32 is not None:
        if "TF32" in flags:
            config.set_flag(tf32)
        else:
            config.clear_flag(tf32)  # on by default: an fp32 build must not silently round to TF32
    _add_profile(builder, network, config, profile, onnx_path)

    timing_cache = None
    if timing_cache_path is not None:
        timing_cache_path = Path(timing_cache_path)
        blob = timing_cache_path.read_bytes() if timing_cache_path.is_file() else b""
        timing_cache = config.create_timing_cache(blob)
        config.set_timing_cache(timing_cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"{onnx_path}: TensorRT failed to build a {precision} plan (see the log above)")
    atomic_write_bytes(plan_path, bytes(serialized))
    if timing_cache is not None:
        atomic_write_bytes(timing_cache_path, bytes(config.get_timing_cache().serialize()))

    build_info = make_build_info(
        gpu,
        str(trt.__version__),
        profile,
        workspace_mib=int(workspace_mib),
        build_time_s=time.perf_counter() - start,
        builder_flags=flags,
        cuda_driver_version=driver_version(),
    )
    write_sidecar(plan_path, build_info)
    return build_info


__all__ = ["engine_from_onnx", "import_tensorrt", "tensorrt_version"]
