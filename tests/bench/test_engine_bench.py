"""The statistics, the stability warning and the input batches behind ``pointserve bench``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pointserve.bench.engine_bench import BenchConfig, BenchResult, QueryTime, Stats, make_inputs, run_benchmark
from pointserve.bench.phases import Phases
from pointserve.bench.report import format_report
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


def test_inputs_are_unit_sphere_clouds_with_categories_when_needed():
    target = BenchTarget(
        label="x",
        path=Path("x"),
        backend="onnxruntime",
        make_runner=lambda: None,
        needs_category=True,
        num_categories=3,
    )
    points, category = make_inputs(target, 5, 100, seed=1)
    assert points.shape == (5, 100, 3) and points.dtype == np.float32
    assert np.linalg.norm(points, axis=-1).max(axis=1) == pytest.approx(np.ones(5))
    assert category.shape == (5,) and category.dtype == np.int64 and 0 <= category.min() <= category.max() < 3
    again, _ = make_inputs(target, 5, 100, seed=1)
    np.testing.assert_array_equal(points, again)


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
