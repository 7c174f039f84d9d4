"""The statistics, the stability warning and the input batches behind ``pointserve bench``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pointserve.bench.engine_bench import BenchConfig, BenchResult, QueryTime, Stats, make_inputs, run_benchmark
from pointserve.bench.phases import Phases
from pointserve.bench.report import device_info, format_report, result_dict
from pointserve.bench.targets import BenchTarget, resolve_targets, split_spec
from pointserve.errors import ConfigError


def _result(latencies_ms: list[float], threshold: float = 1.0) -> BenchResult:
    target = BenchTarget(  # a plain record; nothing is run
        label="x", path=Path("x.onnx"), backend="onnxruntime", make_runner=lambda: None
    )
    config = BenchConfig(cov_threshold_pct=threshold)
    times = [
        QueryTime(i * 0.01, ms / 1e3, Phases(enqueue_s=1e-5, compute_s=ms / 1e3 - 1e-5))
        for i, ms in enumerate(latencies_ms)
    ]
    return BenchResult(target, config, 64, times, walltime_s=sum(latencies_ms) / 1e3)


def test_stats_match_numpy():
    values = [0.001, 0.002, 0.003, 0.010]
    stats = Stats.of(values, (50, 90))
    assert stats.min_ms == pytest.approx(1) and stats.max_ms == pytest.approx(10)
    assert stats.mean_ms == pytest.approx(4) and stats.median_ms == pytest.approx(2.5)
    assert stats.percentiles_ms[90.0] == pytest.approx(np.percentile([1, 2, 3, 10], 90))
    assert stats.cov_pct == pytest.approx(100 * np.std([1, 2, 3, 10]) / 4)


def test_unstable_timings_get_trtexecs_warning():
    from pointserve.bench.engine_bench import stability_warnings

    steady = _result([2.0, 2.001, 1.999, 2.0])
    assert stability_warnings(steady) == []
    noisy = _result([1.0, 3.0, 1.0, 3.0])
    (warning, hint) = stability_warnings(noisy)
    assert warning == "* Latency is unstable, with coefficient of variance = 50.00%."
    assert "--streams" in hint
    assert stability_warnings(_result([1.0, 3.0, 1.0, 3.0], threshold=60.0)) == []


def test_report_of_a_result_without_queries_says_so():
    text = format_report(_result([]), {"cpu": "c", "usable_cpus": 1, "pointserve": "0"}, explain=False)
    assert text.endswith("No queries were timed.")


def test_bare_inputs_are_unit_sphere_clouds_with_categories_when_needed():
    target = BenchTarget(
        label="x",
        path=Path("x"),
        backend="onnxruntime",
        make_runner=lambda: None,
        needs_category=True,
        num_categories=3,
    )
    feeds = make_inputs(target, 5, 100, seed=1)
    points, category = feeds["points"], feeds["category"]
    assert points.shape == (5, 100, 3) and points.dtype == np.float32
    assert np.linalg.norm(points, axis=-1).max(axis=1) == pytest.approx(np.ones(5))
    assert category.shape == (5,) and category.dtype == np.int64 and 0 <= category.min() <= category.max() < 3
    again = make_inputs(target, 5, 100, seed=1)
    np.testing.assert_array_equal(points, again["points"])


def test_repository_inputs_come_from_the_family(bench_model_dir: Path):
    from pointserve.models.collate import random_feeds
    from pointserve.models.registry import get_spec

    (target,) = resolve_targets(f"{bench_model_dir}:fp32")
    feeds = make_inputs(target, 3, 50, seed=2)
    want, _ = random_feeds(get_spec(target.card.architecture), target.card, 3, 50, np.random.default_rng(2))
    assert feeds.keys() == want.keys() == {"points"}
    np.testing.assert_array_equal(feeds["points"], want["points"])
    assert [s.name for s in target.input_specs] == ["points"]


def test_bare_graphs_other_than_raw_clouds_are_refused(tmp_path: Path):
    import onnx
    from onnx import TensorProto, helper

    from pointserve.bench.targets import bare_graph_specs

    def graph(path: Path, inputs) -> Path:
        nodes = [helper.make_node("Identity", [inputs[0].name], ["logits"])]
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", "N", 3])
        onnx.save(helper.make_model(helper.make_graph(nodes, "g", inputs, [out])), str(path))
        return path

    raw = graph(
        tmp_path / "raw.onnx",
        [
            helper.make_tensor_value_info("xyz", TensorProto.FLOAT, ["B", "N", 3]),
            helper.make_tensor_value_info("cat", TensorProto.INT64, ["B"]),
        ],
    )
    inputs, outputs = bare_graph_specs(raw)
    assert [(s.name, s.shape) for s in inputs] == [("xyz", ["batch", "num_points", 3]), ("cat", ["batch"])]
    assert outputs[0].shape == ["batch", "num_points", 3]
    (target,) = resolve_targets(str(raw))
    assert target.needs_category and set(target.make_feeds(2, 10)) == {"xyz", "cat"}

    knn = graph(
        tmp_path / "knn.onnx",
        [
            helper.make_tensor_value_info("points", TensorProto.FLOAT, ["B", "N", 3]),
            helper.make_tensor_value_info("neighbours", TensorProto.INT64, ["B", "N", 16]),
        ],
    )
    with pytest.raises(ConfigError, match=r"takes raw clouds.*neighbours int64.*repository version"):
        resolve_targets(str(knn))


def test_bare_plan_of_another_graph_is_refused(tmp_path: Path):
    from pointserve.engines.gpu import GpuInfo
    from pointserve.engines.tensorrt.plan import make_build_info, profile_from_flags, write_sidecar
    from pointserve.repository.manifest import BuildInfo

    plan = tmp_path / "fp32-tensorrt.plan"
    plan.write_bytes(b"plan")
    with pytest.raises(ConfigError, match="no fp32-tensorrt.plan.json build record"):
        resolve_targets(str(plan))
    gpu = GpuInfo(0, "NVIDIA H100 80GB HBM3", "9.0")
    info = make_build_info(
        gpu, "11.0.0.5", profile_from_flags(64, needs_category=True), workspace_mib=64, build_time_s=1, builder_flags=[]
    )
    write_sidecar(plan, info)
    (target,) = resolve_targets(str(plan))
    assert (target.backend, target.needs_category, target.default_points) == ("tensorrt", True, 64)
    assert set(target.make_feeds(2, 10)) == {"points", "category"}
    shapes = {"points": [8, 3], "neighbours": [8, 16]}
    write_sidecar(plan, BuildInfo(min_shape=shapes, opt_shape=shapes, max_shape=shapes))
    with pytest.raises(ConfigError, match="repository version"):
        resolve_targets(str(plan))


def test_spec_parsing(tmp_path: Path):
    assert split_spec("repo/model:int8") == (Path("repo/model"), "int8")
    assert split_spec("repo/model") == (Path("repo/model"), None)
    odd = tmp_path / "a:b"
    odd.mkdir()
    assert split_spec(str(odd)) == (odd, None)  # an existing path is never split


def test_config_rejects_nonsense():
    with pytest.raises(ConfigError):
        BenchConfig(batch=0)
    with pytest.raises(ConfigError):
        BenchConfig(percentiles=(100.0,))


def test_run_benchmark_api(bench_model_dir: Path):
    (target,) = resolve_targets(f"{bench_model_dir}:fp16", threads=1, max_batch=3)
    result = run_benchmark(target, BenchConfig(batch=3, warmup_ms=0, duration_s=0, iterations=4, num_points=80))
    assert result.queries == 4 and result.num_points == 80 and result.clouds_per_s == pytest.approx(3 * result.qps)
    assert result.target.precision == "fp16" and result.target.accuracy is not None
    assert all(t.phases.compute_s is not None and t.phases.h2d_s is None for t in result.times)
    # the family's CPU preprocessing is timed per cloud, reported apart from the engine's latency
    assert len(result.preprocess_s) == 16 and all(s > 0 for s in result.preprocess_s)
    assert "Preprocessing (CPU, per cloud of 80 points" in format_report(result, device_info(False))
    assert result_dict(result)["summary"]["preprocess_ms_per_cloud"]["median"] > 0


def test_timed_call_uses_the_backends_timer_on_gpu_providers_only(monkeypatch):
    from types import SimpleNamespace

    from pointserve.bench.phases import timed_call
    from pointserve.engines.base import InputLimits, Runner
    from pointserve.engines.onnxruntime import runner as ort_runner
    from pointserve.engines.tensorrt.plan import point_cloud_inputs
    from pointserve.models.spec import TensorSpec

    bound: dict[str, list] = {"inputs": [], "outputs": []}

    class Binding:
        def bind_ortvalue_input(self, name, value):
            bound["inputs"].append((name, value.shape))

        def bind_output(self, name, device, device_id):
            bound["outputs"].append((name, device))

        def copy_outputs_to_cpu(self):
            return []

    class FakeOrt(Runner):
        backend = "onnxruntime"

        def __init__(self, providers):
            outputs = [TensorSpec(name="logits", dtype="float32", shape=["batch", 4])]
            super().__init__(point_cloud_inputs(3, True), outputs, InputLimits(), "fake")
            self.active_providers = providers
            self.session = SimpleNamespace(io_binding=Binding, run_with_iobinding=lambda binding: None)

        def _load_impl(self):
            pass

        def _infer_impl(self, feeds):
            return {"logits": np.zeros((len(feeds["points"]), 4), np.float32)}

    fake_ort = SimpleNamespace(OrtValue=SimpleNamespace(ortvalue_from_numpy=lambda a, device, i: a))
    monkeypatch.setattr(ort_runner, "import_onnxruntime", lambda: fake_ort)
    feeds = {"points": np.zeros((2, 8, 3), np.float32), "category": np.array([0, 1])}

    cpu = FakeOrt(["CPUExecutionProvider"]).load()
    call, gpu = timed_call(cpu)
    assert not gpu and call(feeds).compute_s is not None

    cuda = FakeOrt(["CUDAExecutionProvider", "CPUExecutionProvider"]).load()
    call, gpu = timed_call(cuda)
    phases = call(feeds)
    assert gpu and phases.gpu_compute_s is not None and phases.compute_s is None
    assert bound == {"inputs": [("points", (2, 8, 3)), ("category", (2,))], "outputs": [("logits", "cuda")]}
    _, gpu = timed_call(cuda, gpu_phases=False)
    assert not gpu
