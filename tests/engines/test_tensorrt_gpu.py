"""TensorRT builder and runner on a real GPU (skipped without one, or without tensorrt / cuda-python)."""

from __future__ import annotations

import numpy as np
import pytest

from pointserve.data.shapes import CLASS_NAMES
from pointserve.engines.base import InputLimits
from pointserve.engines.onnxruntime.runner import OnnxRuntimeRunner
from pointserve.engines.tensorrt.plan import point_cloud_inputs, profile_from_flags, read_sidecar
from pointserve.errors import EngineCompatibilityError
from pointserve.models.spec import TensorSpec

INPUTS = point_cloud_inputs(3)
OUTPUTS = [TensorSpec(name="logits", dtype="float32", shape=["batch", len(CLASS_NAMES)])]

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def trt():
    pytest.importorskip("cuda.bindings")
    return pytest.importorskip("tensorrt")


def _clouds(batch, num_points, seed=0):
    """The feeds of a classifier: {"points": (B, N, 3) float32}."""
    return {"points": np.random.default_rng(seed).uniform(-1, 1, (batch, num_points, 3)).astype(np.float32)}


@pytest.fixture(scope="module")
def plans(trt, tiny_models, tmp_path_factory):
    from pointserve.engines.tensorrt.builder import engine_from_onnx

    tmp = tmp_path_factory.mktemp("plans")
    profile = profile_from_flags(64, max_batch=8, max_points=256)
    cache = tmp / "timing.cache"
    built = {}
    for precision in ("fp32", "tf32"):
        plan = tmp / f"{precision}.plan"
        engine_from_onnx(tiny_models["cls"]["onnx"], plan, precision, profile, 256, cache)
        built[precision] = plan
    assert cache.is_file() and cache.stat().st_size > 0
    return built


@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-3), ("tf32", 5e-2)])
def test_plan_matches_onnxruntime(plans, tiny_models, precision, tolerance):
    from pointserve.engines.tensorrt.runner import TensorRTRunner

    info = read_sidecar(plans[precision])
    assert info.builder_flags == (["TF32"] if precision == "tf32" else [])
    limits = InputLimits(dims={"batch": (1, 8), "num_points": (1, 256)})
    ref = OnnxRuntimeRunner(tiny_models["cls"]["onnx"], INPUTS, OUTPUTS, limits)
    with ref, TensorRTRunner(plans[precision], INPUTS, OUTPUTS) as runner:
        for batch, num_points in [(1, 64), (8, 256), (3, 17), (1, 64)]:  # repeats a shape: buffers reused
            feeds = _clouds(batch, num_points)
            got, want = runner.infer(feeds)["logits"], ref.infer(feeds)["logits"]
            assert got.dtype == np.float32 and got.shape == want.shape == (batch, len(CLASS_NAMES))
            np.testing.assert_allclose(got, want, atol=tolerance, rtol=0)
        assert len(runner._buffers) == 3


def test_cuda_graph_replay_gives_the_same_answer(plans):
    from pointserve.engines.tensorrt.runner import TensorRTRunner

    feeds = _clouds(4, 64, seed=3)
    with TensorRTRunner(plans["fp32"]) as plain, TensorRTRunner(plans["fp32"], cuda_graph=True) as graphed:
        want = plain.infer(feeds)["logits"]
        for _ in range(3):  # first run direct, second captures, third replays
            np.testing.assert_array_equal(graphed.infer(feeds)["logits"], want)
        assert graphed._buffers[((4, 64, 3),)].graph is not None


def test_shape_cache_is_bounded(plans):
    from pointserve.engines.tensorrt.runner import TensorRTRunner

    with TensorRTRunner(plans["fp32"], max_cached_shapes=2) as runner:
        for n in (10, 20, 30, 10):
            runner.infer(_clouds(1, n))
        assert list(runner._buffers) == [((1, 30, 3),), ((1, 10, 3),)]


def test_bare_plan_reads_its_outputs_from_the_engine(plans):
    from pointserve.engines.tensorrt.runner import TensorRTRunner

    with TensorRTRunner(plans["fp32"]) as runner:  # no specs: raw-cloud inputs from the sidecar
        assert runner.output_specs == OUTPUTS
        assert runner.infer(_clouds(2, 33))["logits"].shape == (2, len(CLASS_NAMES))


def test_plan_for_another_gpu_is_refused_before_deserialising(plans):
    from pointserve.engines.tensorrt.runner import TensorRTRunner

    info = read_sidecar(plans["fp32"]).model_copy(update={"compute_capability": "5.0", "gpu_name": "Old GPU"})
    with pytest.raises(EngineCompatibilityError, match="built for Old GPU"):
        TensorRTRunner(plans["fp32"], build_info=info).load()
