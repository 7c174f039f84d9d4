"""OnnxRuntimeRunner on real ONNX files against the PyTorch reference runner."""

from __future__ import annotations

import numpy as np
import pytest

from pointserve.engines.base import InputLimits
from pointserve.engines.onnxruntime.runner import CPU, OnnxRuntimeRunner, resolve_providers, session_from_onnx
from pointserve.engines.torch.runner import TorchRunner
from pointserve.errors import BackendUnavailableError, EngineError, InputError
from pointserve.models import get_spec
from pointserve.models.spec import TensorSpec

LIMITS = InputLimits(dims={"batch": (1, 8), "num_points": (1, 256)})
SEG_LIMITS = InputLimits(dims={"batch": (1, 8), "num_points": (1, 256)}, value_bounds={"category": 12})


def _specs(model: dict) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The graph's tensors as the manifest records them: the architecture spec's."""
    card = model["card"]
    spec = get_spec(card.architecture)
    return spec.inputs(card), spec.outputs(card)


def _ort(model: dict, limits: InputLimits = LIMITS, **kwargs) -> OnnxRuntimeRunner:
    return OnnxRuntimeRunner(model["onnx"], *_specs(model), limits, **kwargs)


@pytest.fixture(scope="module")
def runners(tiny_models):
    """Loaded once per module: (onnxruntime, torch) for the classifier and the part segmenter."""
    pairs = {
        "cls": (_ort(tiny_models["cls"]), TorchRunner(tiny_models["cls"]["checkpoint"], LIMITS)),
        "seg": (_ort(tiny_models["seg"], SEG_LIMITS), TorchRunner(tiny_models["seg"]["checkpoint"], SEG_LIMITS)),
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
    feeds = {"points": _clouds(batch, num_points)}
    got, want = ort_runner.infer(feeds)["logits"], torch_runner.infer(feeds)["logits"]
    assert got.shape == (batch, 12) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert (got.argmax(-1) == want.argmax(-1)).all()


@pytest.mark.parametrize("batch, num_points", [(1, 64), (4, 33)])
def test_part_segmenter_matches_torch(runners, batch, num_points):
    ort_runner, ref = runners["seg"]
    feeds = {"points": _clouds(batch, num_points, seed=1), "category": np.arange(batch) % 2}
    got, want = ort_runner.infer(feeds)["logits"], ref.infer(feeds)["logits"]
    assert ort_runner.input_names == ["points", "category"]
    assert got.shape == (batch, num_points, 29)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_graph_names_are_checked_against_the_manifest(tiny_models, tmp_path):
    import onnx

    graph = onnx.load(str(tiny_models["cls"]["onnx"]))
    # Rename the input and output everywhere: the runner feeds the names the manifest gives, so the graph
    # must carry exactly those.
    for node in graph.graph.node:
        node.input[:] = ["xyz" if i == "points" else i for i in node.input]
        node.output[:] = ["scores" if o == "logits" else o for o in node.output]
    graph.graph.input[0].name = "xyz"
    graph.graph.output[0].name = "scores"
    renamed = tmp_path / "renamed.onnx"
    onnx.save(graph, str(renamed))
    inputs, outputs = _specs(tiny_models["cls"])
    with pytest.raises(EngineError, match=r"the graph takes \['xyz'\] and gives \['scores'\].*manifest says"):
        OnnxRuntimeRunner(renamed, inputs, outputs, LIMITS).load()
    renamed_inputs = [inputs[0].model_copy(update={"name": "xyz"})]
    renamed_outputs = [outputs[0].model_copy(update={"name": "scores"})]
    points = _clouds(2, 40)
    with (
        OnnxRuntimeRunner(renamed, renamed_inputs, renamed_outputs, LIMITS) as runner,
        _ort(tiny_models["cls"]) as ref,
    ):
        assert (runner.input_names, runner.output_names) == (["xyz"], ["scores"])
        np.testing.assert_array_equal(runner.infer({"xyz": points})["scores"], ref.infer({"points": points})["logits"])


@pytest.mark.parametrize(
    "points, message",
    [
        (np.zeros((2, 10, 4), np.float32), r"'points' must have shape \['batch', 'num_points', 3\], got \[2, 10, 4\]"),
        (np.zeros((9, 10, 3), np.float32), r"batch = 9 is outside \[1, 8\]"),
        (np.zeros((1, 300, 3), np.float32), r"num_points = 300 is outside \[1, 256\]"),
        (np.zeros((10, 3), np.float32), r"'points' must have shape \['batch', 'num_points', 3\], got \[10, 3\]"),
        (np.zeros((0, 10, 3), np.float32), r"batch = 0 is outside \[1, 8\]"),
    ],
)
def test_bad_inputs_are_refused(runners, points, message):
    with pytest.raises(InputError, match=message):
        runners["cls"][0].infer({"points": points})


def test_feed_names_are_checked(runners):
    points = _clouds(2, 10)
    with pytest.raises(InputError, match=r"unknown input\(s\) category; it takes points"):
        runners["cls"][0].infer({"points": points, "category": np.array([0, 1])})
    with pytest.raises(InputError, match="missing input 'points'"):
        runners["cls"][0].infer({})
    with pytest.raises(InputError, match="must be an integer tensor"):
        runners["seg"][0].infer({"points": points, "category": np.array([0.0, 1.0])})


def test_category_checks(runners):
    runner = runners["seg"][0]
    points = _clouds(2, 10)
    with pytest.raises(InputError, match="missing input 'category'"):
        runner.infer({"points": points})
    with pytest.raises(InputError, match=r"'category' holds values outside \[0, 12\)"):
        runner.infer({"points": points, "category": np.array([0, 12])})
    with pytest.raises(InputError, match=r"'category' holds values outside \[0, 12\)"):
        runner.infer({"points": points, "category": np.array([-1, 0])})
    with pytest.raises(InputError, match="dimension 'batch' is 2 in 'points' but 1 in 'category'"):
        runner.infer({"points": points, "category": np.array([0])})


def test_card_and_graph_must_agree_on_category(tiny_models):
    cls_inputs, cls_outputs = _specs(tiny_models["cls"])
    seg_inputs, seg_outputs = _specs(tiny_models["seg"])
    with pytest.raises(EngineError, match=r"the graph takes \['points'\].*manifest says \['points', 'category'\]"):
        OnnxRuntimeRunner(tiny_models["cls"]["onnx"], seg_inputs, cls_outputs, SEG_LIMITS).load()
    with pytest.raises(EngineError, match=r"the graph takes \['category', 'points'\].*manifest says \['points'\]"):
        OnnxRuntimeRunner(tiny_models["seg"]["onnx"], cls_inputs, seg_outputs, LIMITS).load()


def test_not_loaded_and_missing_file(tiny_models, tmp_path):
    inputs, outputs = _specs(tiny_models["cls"])
    with pytest.raises(EngineError, match="not loaded"):
        _ort(tiny_models["cls"]).infer({"points": _clouds(1, 8)})
    with pytest.raises(EngineError, match="not found"):
        OnnxRuntimeRunner(tmp_path / "nope.onnx", inputs, outputs, LIMITS).load()
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a graph")
    with pytest.raises(EngineError, match="could not load"):
        OnnxRuntimeRunner(garbage, inputs, outputs, LIMITS).load()


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
