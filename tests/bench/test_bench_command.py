"""``pointserve bench`` end to end on a tiny real repository (real ONNX Runtime sessions, real torch)."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from pointserve.cli import main

QUICK = ["--warmup", "20", "--duration", "0.3", "--iterations", "5", "--threads", "1"]


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(["bench", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_single_variant_prints_every_trtexec_block(bench_model_dir: Path, tmp_path: Path, capsys):
    exported = tmp_path / "bench.json"
    code, out, _ = _run([f"{bench_model_dir}:fp32", "--batch", "2", *QUICK, "--export-json", str(exported)], capsys)
    assert code == 0
    for block in ("=== Model Options ===", "=== Inference Options ===", "=== Device Information ==="):
        assert block in out
    summary = out.split("=== Performance summary ===", 1)[1]
    assert re.search(r"^Throughput: [\d.]+ qps \([\d.]+ clouds/s\)$", summary, re.M)
    latency = re.search(r"^Latency: (.*)$", summary, re.M).group(1)
    for name in ("min", "max", "mean", "median", "percentile(90%)", "percentile(95%)", "percentile(99%)"):
        assert f"{name} = " in latency
    assert re.search(r"^Enqueue Time: min = ", summary, re.M)
    assert re.search(r"^Compute Time: min = ", summary, re.M)
    assert re.search(r"^Total Host Walltime: [\d.]+ s$", summary, re.M)
    # GPU phases are printed on GPU backends only.
    assert "H2D Latency" not in out and "GPU Compute Time" not in out and "D2H Latency" not in out
    assert out.splitlines()[0].startswith("&&&& RUNNING pointserve.bench")
    assert "&&&& PASSED pointserve.bench" in out

    document = json.loads(exported.read_text())
    assert document["schema"] == "pointserve.bench/1" and document["mode"] == "single"
    (result,) = document["results"]
    assert result["target"]["variant"] == "fp32" and result["target"]["backend"] == "onnxruntime"
    assert result["options"]["batch"] == 2 and result["options"]["points"] == 64
    s = result["summary"]
    assert s["queries"] >= 5 and s["clouds"] == 2 * s["queries"]
    assert s["throughput_qps"] == pytest.approx(s["queries"] / s["total_host_walltime_s"])
    assert s["throughput_clouds_per_s"] == pytest.approx(2 * s["throughput_qps"])
    lat = s["latency_ms"]
    assert set(lat["percentiles"]) == {"p90", "p95", "p99"}
    assert lat["min"] <= lat["median"] <= lat["percentiles"]["p99"] <= lat["max"]
    assert s["compute_time_ms"]["median"] <= lat["median"]
    assert "gpu_compute_time_ms" not in s and result["gpu_phases"] is False
    assert len(result["times"]) == s["queries"]
    assert max(t["latency_ms"] for t in result["times"]) == pytest.approx(lat["max"])
    assert result["target"]["accuracy"]["num_samples"] == 24


def test_iterations_and_duration_bound_the_run(bench_model_dir: Path, tmp_path: Path, capsys):
    exported = tmp_path / "b.json"
    argv = [f"{bench_model_dir}:fp32", "--duration", "0", "--iterations", "7", "--warmup", "0", "--threads", "1"]
    code, _, _ = _run([*argv, "--export-json", str(exported)], capsys)
    assert code == 0
    assert json.loads(exported.read_text())["results"][0]["summary"]["queries"] == 7


def test_percentiles_and_streams(bench_model_dir: Path, tmp_path: Path, capsys):
    exported = tmp_path / "b.json"
    argv = [f"{bench_model_dir}:fp16", *QUICK, "--streams", "2", "--percentile", "50,99.9"]
    code, out, _ = _run([*argv, "--export-json", str(exported)], capsys)
    assert code == 0
    assert "percentile(50%) = " in out and "percentile(99.9%) = " in out and "percentile(90%)" not in out
    assert "Streams: 2" in out
    result = json.loads(exported.read_text())["results"][0]
    assert {t["stream"] for t in result["times"]} == {0, 1}
    assert set(result["summary"]["latency_ms"]["percentiles"]) == {"p50", "p99.9"}


def test_bare_onnx_file(bench_model_dir: Path, capsys):
    onnx_file = next((bench_model_dir / "1").glob("fp32*.onnx"))
    code, out, _ = _run([str(onnx_file), "--points", "100", *QUICK], capsys)
    assert code == 0
    assert f"File: {onnx_file}" in out and "Points: 100 (channels 3)" in out
    assert "Throughput:" in out


def test_torch_reference_backend(bench_model_dir: Path, capsys):
    code, out, _ = _run([str(bench_model_dir), "--backend", "torch", *QUICK], capsys)
    assert code == 0
    assert "Variant: fp32-torch (fp32, torch)" in out and "Throughput:" in out


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_compare_interleaves_and_prints_table_and_chart(bench_model_dir: Path, tmp_path: Path, capsys):
    chart, exported = tmp_path / "compare.png", tmp_path / "compare.json"
    argv = [str(bench_model_dir), "--compare", "--batch", "1,4", "--rounds", "2", *QUICK]
    code, out, err = _run([*argv, "--plot", str(chart), "--export-json", str(exported)], capsys)
    assert code == 0
    table = [line for line in out.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert header[:4] == ["variant", "backend", "precision", "batch"]
    assert "throughput (qps)" in header and "accuracy" in header and "agreement with fp32" in header
    rows = {(r[0], r[3]): r for r in ([c.strip() for c in line.strip("|").split("|")] for line in table[1:])}
    assert set(rows) == {(v, b) for v in ("fp32", "fp16", "fp32-torch") for b in ("1", "4")}
    for row in rows.values():
        assert float(row[header.index("throughput (qps)")]) > 0
        assert re.fullmatch(r"\d+\.\d\d% acc\*?", row[header.index("accuracy")])
        assert float(row[header.index("preprocess (ms/cloud)")]) > 0  # the family's CPU work per cloud
    assert rows[("fp32", "1")][header.index("agreement with fp32")] == "100.00%"
    assert "round 2/2" in err

    width, height = _png_size(chart)
    assert width > 400 and height > 200
    document = json.loads(exported.read_text())
    assert document["mode"] == "compare" and len(document["results"]) == 6
    for result in document["results"]:
        # Interleaved: every case was measured in every round.
        assert {t["round"] for t in result["times"]} == {0, 1}
        assert result["summary"]["queries"] >= 5


def test_compare_named_variants_only(bench_model_dir: Path, tmp_path: Path, capsys):
    code, out, _ = _run(
        [str(bench_model_dir), "--compare", "fp16,fp32", "--rounds", "1", *QUICK, "--plot", str(tmp_path / "c.png")],
        capsys,
    )
    assert code == 0
    variants = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| fp")]
    assert variants == ["fp16", "fp32"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["/nonexistent/model"], "not a model version folder"),
        (["{model}:int4"], "has no variant 'int4'"),
        (["{model}", "--backend", "cuda-magic"], "unknown backend 'cuda-magic'"),
        (["{onnx}", "--backend", "tensorrt"], "a bare ONNX file runs on onnxruntime"),
        (["{model}", "--streams", "0"], "must be at least 1"),
    ],
)
def test_bad_input_is_one_clear_line(bench_model_dir: Path, capsys, argv, message):
    onnx_file = next((bench_model_dir / "1").glob("fp32*.onnx"))
    argv = [a.format(model=bench_model_dir, onnx=onnx_file) for a in argv]
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err
