"""The onnxruntime backend: ONNX variants on ONNX Runtime's CPU provider, or its CUDA / TensorRT execution
providers with onnxruntime-gpu. ``onnxruntime`` itself is imported when a session is made."""

from __future__ import annotations

from pointserve.engines.backends import BackendSpec, RunnerRequest, register_backend
from pointserve.engines.environment import RuntimeEnvironment, Selection
from pointserve.engines.onnxruntime.runner import (
    CPU,
    CUDA,
    TENSORRT,
    OnnxRuntimeRunner,
    available_providers,
    import_onnxruntime,
    provider_options,
    resolve_providers,
    session_from_onnx,
)
from pointserve.repository.manifest import onnx_variant_for


def _select(model_version, variant: str, env: RuntimeEnvironment) -> Selection | str:
    if not env.onnxruntime_providers:
        return f"{variant}: onnxruntime is not installed here"
    if env.has_ort_cuda:
        return Selection(variant, "onnxruntime", (CUDA, CPU), reason="ONNX Runtime CUDA")
    return Selection(variant, "onnxruntime", (CPU,), reason="ONNX Runtime CPU")


def _make_runner(request: RunnerRequest) -> OnnxRuntimeRunner:
    from pointserve.engines.limits import limits_for_card

    version = request.model_version
    record = version.variant(request.variant)
    manifest = version.manifest
    return OnnxRuntimeRunner(
        version.variant_path(request.variant, verify=request.verify),
        manifest.inputs,
        manifest.outputs,
        limits_for_card(version.card, max_batch=request.max_batch, max_points=request.max_points),
        providers=request.providers or (CPU,),
        intra_op_threads=request.threads,
        spin_wait=request.spin_wait,
        precision=record.precision,
        engine_cache_dir=request.engine_cache_dir or (version.path / ".ort-trt-cache"),
        name=f"{version.name}/{version.version}/{request.variant}",
    )


def _timed_call(runner):
    from pointserve.engines.onnxruntime.phases import timed_call

    return timed_call(runner)


ONNXRUNTIME = register_backend(
    BackendSpec(
        name="onnxruntime",
        oip_platform="onnxruntime_onnx",
        artifact_suffix=".onnx",
        variant_for=onnx_variant_for,  # tf32 is a TensorRT build flag: here it is the fp32 graph
        select=_select,
        make_runner=_make_runner,
        timed_call=_timed_call,
        priority=20,
        description="ONNX Runtime (CPU; CUDA and TensorRT execution providers with onnxruntime-gpu)",
    )
)

__all__ = [
    "CPU",
    "CUDA",
    "ONNXRUNTIME",
    "TENSORRT",
    "OnnxRuntimeRunner",
    "available_providers",
    "import_onnxruntime",
    "provider_options",
    "resolve_providers",
    "session_from_onnx",
]
