"""Choosing the variant and backend, and create_runner on this (CPU-only) machine."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pointserve.engines import RuntimeEnvironment, create_runner, detect_environment, select_variant
from pointserve.engines.gpu import GpuInfo
from pointserve.engines.onnxruntime.runner import OnnxRuntimeRunner
from pointserve.engines.tensorrt.plan import make_build_info, profile_from_flags
from pointserve.errors import IntegrityError, ModelNotFoundError

H100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", "9.0")
A100 = GpuInfo(0, "NVIDIA A100-SXM4-80GB", "8.0")
CPU_ONLY = RuntimeEnvironment(onnxruntime_providers=("CPUExecutionProvider",))
GPU_ORT = RuntimeEnvironment(gpu=H100, onnxruntime_providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
GPU_TRT = RuntimeEnvironment(gpu=H100, tensorrt_version="11.0.0.5", onnxruntime_providers=GPU_ORT.onnxruntime_providers)


def _add_plan(version, tmp_path, precision: str, gpu: GpuInfo = H100):
    info = make_build_info(
        gpu, "11.0.0.5", profile_from_flags(64, max_batch=16), workspace_mib=64, build_time_s=1, builder_flags=[]
    )
    plan = tmp_path / f"{precision}.plan"
    plan.write_bytes(b"not really a plan")
    version.add_variant(
        f"{precision}-tensorrt", plan, precision=precision, backend="tensorrt", source="fp32", built_for=info
    )


def test_cpu_machine_falls_back_to_onnxruntime_cpu(repository):
    version = repository.open("tiny-cls")
    choice = select_variant(version)  # the real environment of this machine
    assert (choice.variant, choice.backend, choice.providers) == ("fp32", "onnxruntime", ("CPUExecutionProvider",))
    assert detect_environment().gpu is None


def test_plan_for_this_gpu_wins(repository, tmp_path):
    version = repository.open("tiny-cls")
    _add_plan(version, tmp_path, "fp32")
    assert select_variant(version, environment=GPU_TRT).variant == "fp32-tensorrt"
    assert select_variant(version, environment=GPU_TRT, backend="onnxruntime").backend == "onnxruntime"
    # tf32 builds from the fp32 graph: no tf32 plan -> the fp32 ONNX variant on ONNX Runtime CUDA
    tf32 = select_variant(version, "tf32", environment=GPU_TRT)
    assert (tf32.variant, tf32.providers[0]) == ("fp32", "CUDAExecutionProvider")


def test_plan_for_another_gpu_falls_back_to_onnxruntime_cuda(repository, tmp_path):
    version = repository.open("tiny-cls")
    _add_plan(version, tmp_path, "fp32", gpu=A100)
    choice = select_variant(version, environment=GPU_TRT)
    assert (choice.variant, choice.backend, choice.providers[0]) == ("fp32", "onnxruntime", "CUDAExecutionProvider")
    assert select_variant(version, environment=CPU_ONLY).providers == ("CPUExecutionProvider",)
    with pytest.raises(ModelNotFoundError, match="compute capability 8.0"):
        select_variant(version, environment=GPU_TRT, backend="tensorrt")


def test_preference_order_and_exact_names(repository, tmp_path):
    version = repository.open("tiny-cls")
    _add_plan(version, tmp_path, "fp16")
    assert select_variant(version, ["int8", "fp16", "fp32"], environment=GPU_TRT).variant == "fp16-tensorrt"
    assert select_variant(version, ["int8", "fp16", "fp32"], environment=CPU_ONLY).variant == "fp32"
    assert select_variant(version, "fp32", environment=GPU_TRT).variant == "fp32"
    with pytest.raises(ModelNotFoundError, match="nothing runnable"):
        select_variant(version, "fp16-tensorrt", environment=CPU_ONLY)
    with pytest.raises(ModelNotFoundError, match="no variant 'int8-tensorrt'"):
        select_variant(version, "int8-tensorrt", environment=GPU_TRT)
    with pytest.raises(ModelNotFoundError, match="no int8 variant for onnxruntime"):
        select_variant(version, "int8", environment=CPU_ONLY)


def test_create_runner_runs_here(repository):
    version = repository.open("tiny-seg")
    runner = create_runner(version, max_batch=4, threads=1)
    assert isinstance(runner, OnnxRuntimeRunner)
    assert runner.input_names == ["points", "category"]
    assert runner.limits.value_bounds == {"category": 12} and runner.limits.max_batch == 4
    with runner:
        logits = runner.infer({"points": np.zeros((2, 30, 3), np.float32), "category": np.array([0, 1])})["logits"]
    assert logits.shape == (2, 30, 29)


def test_create_runner_refuses_a_tampered_variant(repository):
    version = repository.open("tiny-cls")
    path = version.variant_path("fp32")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="fp32.onnx"):
        create_runner(version)


def test_importing_engines_loads_no_runtime():
    code = (
        "import sys, pointserve.engines, pointserve.repository\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'tensorrt', 'cuda', 'onnx') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
