"""OnnxRuntimeRunner on real ONNX files against the PyTorch reference runner."""

from __future__ import annotations

import numpy as np
import pytest

from pointserve.engines.base import InputLimits
from pointserve.engines.onnxruntime.runner import CPU, OnnxRuntimeRunner, resolve_providers, session_from_onnx
from pointserve.engines.torch.runner import TorchRunner
from pointserve.errors import BackendUnavailableError, EngineError, InputError

LIMITS = InputLimits(max_batch=8, min_points=1, max_points=256)
SEG_LIMITS = InputLimits(max_batch=8, min_points=1, max_points=256, needs_category=True, num_categories=12)


@pytest.fixture(scope="module")
def runners(tiny_models):
    """Loaded once per module: (onnxruntime, torch) for the classifier and the part segmenter."""
    pairs = {
        "cls": (
            OnnxRuntimeRunner(tiny_models["cls"]["onnx"], LIMITS),
            TorchRunner(tiny_models["cls"]["checkpoint"], LIMITS),
        ),
        "seg": (
            OnnxRuntimeRunner(tiny_models["seg"]["onnx"], SEG_LIMITS),
            TorchRunner(tiny_models["seg"]["checkpoint"], SEG_LIMITS),
        ),
    }
    for pair in pairs.values():
        for runner in pair:
            runner.load()
    yield pairs
    for pair in pairs.values():
        for runner in pair:
            runner.close()


def _clouds(batch: int, num_points: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, size=(batch, num_points, 3)).astype(np.float32)


@pytest.mark.parametrize("batch, num_points", [(1, 64), (3, 17), (8, 200), (2, 1)])
def test_classifier_matches_torch(runners, batch, num_points):
    ort_runner, torch_runner = runners["cls"]
    points = _clouds(batch, num_points)
    got, want = ort_runner.infer(points), torch_runner.infer(points)
    assert got.shape == (batch, 12) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert (got.argmax(-1) == want.argmax(-1)).all()


@pytest.mark.parametrize("batch, num_points", [(1, 64), (4, 33)])
def test_part_segmenter_matches_torch(runners, batch, num_points):
    ort_runner, ref = runners["seg"]
    points = _clouds(batch, num_points, seed=1)
    category = np.arange(batch) % 2
    got, want = ort_runner.infer(points, category), ref.infer(points, category)
    assert ort_runner.category_name == "category"
    assert got.shape == (batch, num_points, 29)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_io_names_are_read_from_the_graph(tiny_models, tmp_path):
    import onnx

    graph = onnx.load(str(tiny_models["cls"]["onnx"]))
    # Rename the input and output everywhere: the runner must find them by type and rank.
    for node in graph.graph.node:
        node.input[:] = ["xyz" if i == "points" else i for i in node.input]
        node.output[:] = ["scores" if o == "logits" else o for o in node.output]
    graph.graph.input[0].name = "xyz"
    graph.graph.output[0].name = "scores"
    renamed = tmp_path / "renamed.onnx"
    onnx.save(graph, str(renamed))
    points = _clouds(2, 40)
    with OnnxRuntimeRunner(renamed, LIMITS) as runner, OnnxRuntimeRunner(tiny_models["cls"]["onnx"], LIMITS) as ref:
        assert (runner.points_name, runner.output_name) == ("xyz", "scores")
        np.testing.assert_array_equal(runner.infer(points), ref.infer(points))


@pytest.mark.parametrize(
    "points, category, message",
    [
        (np.zeros((2, 10, 4), np.float32), None, "4 channels"),
        (np.zeros((9, 10, 3), np.float32), None, "batch of 9"),
        (np.zeros((1, 300, 3), np.float32), None, "300 points"),
        (np.zeros((10, 3), np.float32), None, r"\(B, N, C\)"),
    ],
)
def test_bad_inputs_are_refused(runners, points, category, message):
    with pytest.raises(InputError, match=message):
        runners["cls"][0].infer(points, category)


def test_category_checks(runners):
    runner = runners["seg"][0]
    points = _clouds(2, 10)
    with pytest.raises(InputError, match="needs the object category"):
        runner.infer(points)
    with pytest.raises(InputError, match="out of range"):
        runner.infer(points, np.array([0, 12]))
    with pytest.raises(InputError, match="one entry per cloud"):
        runner.infer(points, np.array([0]))


def test_card_and_graph_must_agree_on_category(tiny_models):
    with pytest.raises(EngineError, match="needs a category input"):
        OnnxRuntimeRunner(tiny_models["cls"]["onnx"], SEG_LIMITS).load()
    with pytest.raises(EngineError, match="takes a category"):
        OnnxRuntimeRunner(tiny_models["seg"]["onnx"], LIMITS).load()


def test_not_loaded_and_missing_file(tiny_models, tmp_path):
    with pytest.raises(EngineError, match="not loaded"):
        OnnxRuntimeRunner(tiny_models["cls"]["onnx"], LIMITS).infer(_clouds(1, 8))
    with pytest.raises(EngineError, match="not found"):
        OnnxRuntimeRunner(tmp_path / "nope.onnx", LIMITS).load()
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a graph")
    with pytest.raises(EngineError, match="could not load"):
        OnnxRuntimeRunner(garbage, LIMITS).load()


def test_thread_settings_reach_the_session(tiny_models):
    session = session_from_onnx(tiny_models["cls"]["onnx"], intra_op_threads=1, inter_op_threads=2)
    options = session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 2)


def test_provider_resolution():
    assert resolve_providers("auto", available=[CPU]) == [CPU]
    assert resolve_providers(["cuda"], available=["CUDAExecutionProvider", CPU]) == ["CUDAExecutionProvider", CPU]
    assert resolve_providers("auto", available=["TensorrtExecutionProvider", "CUDAExecutionProvider", CPU]) == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        CPU,
    ]
    with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider not available"):
        resolve_providers(["cuda"], available=[CPU])


def test_tensorrt_provider_options_follow_the_typing_mode(tmp_path):
    from pointserve.engines.onnxruntime.runner import TENSORRT, provider_options

    strong = provider_options(TENSORRT, precision="fp16", engine_cache_dir=tmp_path / "cache")
    assert strong["trt_fp16_enable"] is False and strong["trt_engine_cache_enable"] is True
    assert strong["trt_engine_cache_path"] == str(tmp_path / "cache")
    weak = provider_options(TENSORRT, precision="int8", strongly_typed=False)
    assert weak["trt_int8_enable"] is True and weak["trt_fp16_enable"] is False
