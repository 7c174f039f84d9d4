"""``pointserve bench`` on GPU backends: the H2D / GPU Compute / D2H blocks (skipped without a GPU, TensorRT or
onnxruntime-gpu)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pointserve.cli import main

pytestmark = pytest.mark.gpu
QUICK = ["--warmup", "50", "--duration", "0.5", "--iterations", "20"]
GPU_LINES = ("H2D Latency: min = ", "GPU Compute Time: min = ", "D2H Latency: min = ", "Enqueue Time: min = ")


def _check_gpu_report(out: str, exported: Path) -> None:
    summary = out.split("=== Performance summary ===", 1)[1]
    for line in GPU_LINES:
        assert re.search(rf"^{re.escape(line)}", summary, re.M), line
    assert "Compute Time: min" not in summary.replace("GPU Compute Time", "")
    assert "Total GPU Compute Time:" in summary and re.search(r"^GPU: .+ \(compute capability ", out, re.M)
    result = json.loads(exported.read_text())["results"][0]
    assert result["gpu_phases"] is True
    s = result["summary"]
    for key in ("h2d_latency_ms", "gpu_compute_time_ms", "d2h_latency_ms"):
        assert s[key]["min"] > 0 and s[key]["median"] <= s["latency_ms"]["max"]
    # The phases happen inside the query, so they cannot add up to more than its host latency.
    for t in result["times"]:
        assert t["h2d_ms"] + t["gpu_compute_ms"] + t["d2h_ms"] <= t["latency_ms"] * 1.01


def test_tensorrt_plan_reports_gpu_phases(bench_model_dir: Path, tmp_path: Path, capsys):
    pytest.importorskip("cuda.bindings")
    pytest.importorskip("tensorrt")
    from pointserve.engines.build import build_tensorrt_plans
    from pointserve.engines.tensorrt.plan import profile_from_flags
    from pointserve.repository import Repository

    version = Repository(bench_model_dir.parent).open(bench_model_dir.name)
    build_tensorrt_plans(version, ["fp16"], profile_from_flags(64, max_batch=8, max_points=256))
    exported = tmp_path / "trt.json"
    argv = ["bench", f"{bench_model_dir}:fp16-tensorrt", "--batch", "8", *QUICK, "--export-json", str(exported)]
    assert main(argv) == 0
    _check_gpu_report(capsys.readouterr().out, exported)


def test_onnxruntime_cuda_reports_gpu_phases(bench_model_dir: Path, tmp_path: Path, capsys):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu with CUDA is not installed")
    exported = tmp_path / "ort.json"
    argv = ["bench", f"{bench_model_dir}:fp32", "--providers", "cuda", "--batch", "8", *QUICK]
    assert main([*argv, "--export-json", str(exported)]) == 0
    _check_gpu_report(capsys.readouterr().out, exported)
