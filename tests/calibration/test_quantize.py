"""The int8 Q/DQ graph: the form TensorRT accepts, dynamic axes kept, close to fp32, scales cached."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from calibration_cases import CALIBRATION_SAMPLES
from onnx import numpy_helper

from pointserve.calibration import check_qdq_graph, quantize_int8
from pointserve.data.transforms import normalize, resample_indices
from pointserve.errors import CalibrationError
from pointserve.export.onnx_export import graph_specs
from pointserve.models.graph_rules import compute_nodes_near_input
from pointserve.models.pointnet import coordinate_layers


@pytest.fixture(scope="module")
def classifier_int8(classifier_version, classifier_calibration, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8")
    fp32 = classifier_version.variant_path("fp32")
    first = quantize_int8(fp32, classifier_calibration.path, out / "int8.onnx", cache_dir=out / "cache")
    again = quantize_int8(fp32, classifier_calibration.path, out / "int8-again.onnx", cache_dir=out / "cache")
    return fp32, first, again


@pytest.fixture(scope="module")
def part_segmenter_int8(part_segmenter, tmp_path_factory):
    _, fp32, calibration = part_segmenter
    out = tmp_path_factory.mktemp("int8-partseg")
    return fp32, quantize_int8(fp32, calibration.path, out / "int8.onnx")


def _session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _assert_tensorrt_form(model: onnx.ModelProto, kept_in_float: frozenset[str] = frozenset()) -> None:
    """Checked here from first principles, independently of check_qdq_graph."""
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {n.output[0]: n for n in model.graph.node}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:
        zero_point = constants[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any(), node.name
        scale, x = constants[node.input[1]], constants.get(node.input[0])
        if node.op_type == "DequantizeLinear" and x is not None:
            assert x.dtype != np.int32, f"int32 bias behind {node.name}"
        if x is None:  # an activation: one scale for the whole tensor
            assert scale.size == 1, node.name
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm") or node.name in kept_in_float:
            continue
        # The weight: an int8 constant behind a DequantizeLinear with one scale per output channel.
        dequantize = producers[node.input[1]]
        assert dequantize.op_type == "DequantizeLinear"
        weight, scale = constants[dequantize.input[0]], constants[dequantize.input[1]]
        axis = next(a.i for a in dequantize.attribute if a.name == "axis")
        assert weight.dtype == np.int8 and scale.shape == (weight.shape[axis],) and scale.shape[0] > 1
        # The bias stays a float32 initializer.
        if len(node.input) > 2:
            assert constants[node.input[2]].dtype == np.float32


def test_classifier_int8_graph_is_symmetric_per_channel_with_float_biases(classifier_int8):
    _, result, _ = classifier_int8
    model = onnx.load(str(result.path))
    _assert_tensorrt_form(model)
    summary = check_qdq_graph(model)
    assert summary.per_channel_weights == 14  # 8 Conv + 6 Gemm
    onnx.checker.check_model(model, full_check=True)


def test_classifier_keeps_no_layer_in_float(classifier_version, classifier_calibration, classifier_int8, tmp_path):
    """PointNet's int8 rule for classification is empty: asking for the coordinate layers in float changes nothing."""
    fp32, first, _ = classifier_int8
    card = classifier_version.card
    assert coordinate_layers(onnx.load(str(fp32)), card) == []
    result = quantize_int8(
        fp32,
        classifier_calibration.path,
        tmp_path / "int8.onnx",
        keep_input_layers_float=True,
        card=card,
        cache_dir=first.cache_path.parent,
    )
    assert result.sha256 == first.sha256  # the same graph, byte for byte
    assert check_qdq_graph(result.path).per_channel_weights == 14  # 8 Conv + 6 Gemm, all quantized


def test_keeping_layers_in_float_needs_the_card(classifier_version, classifier_calibration, tmp_path):
    fp32 = classifier_version.variant_path("fp32")
    with pytest.raises(CalibrationError, match="keep_input_layers_float needs the model card"):
        quantize_int8(fp32, classifier_calibration.path, tmp_path / "int8.onnx", keep_input_layers_float=True)
    assert not (tmp_path / "int8.onnx").exists()


def test_layers_on_raw_coordinates_can_stay_in_float(part_segmenter, part_segmenter_int8, tmp_path):
    card, fp32, calibration = part_segmenter
    result = quantize_int8(
        fp32, calibration.path, tmp_path / "int8.onnx", keep_input_layers_float=True, card=card, cache_dir=tmp_path
    )
    model = onnx.load(str(result.path))
    kept = coordinate_layers(model, card)
    # The segmentation rule: the compute layers within two hops of the raw coordinates, the same nodes in the
    # fp32 graph as in the quantized one.
    assert kept == compute_nodes_near_input(onnx.load(str(fp32)), "points", hops=2)
    _assert_tensorrt_form(model, frozenset(kept))
    all_int8 = check_qdq_graph(part_segmenter_int8[1].path).per_channel_weights
    # the 3 convolutions on raw coordinates stay float
    assert (all_int8, check_qdq_graph(model).per_channel_weights) == (16, 13)
    produced_by = {out: node.op_type for node in model.graph.node for out in node.output}
    nodes = {node.name: node for node in model.graph.node}
    assert {nodes[name].op_type for name in kept} == {"Conv", "MatMul"} and len(kept) == 4
    for name in kept:  # the coordinates (and conv weights) reach them in float, not through DequantizeLinear
        node = nodes[name]
        if node.op_type == "Conv":
            assert produced_by.get(node.input[1]) != "DequantizeLinear", name
        assert any(produced_by.get(i) != "DequantizeLinear" for i in node.input), name
    quantized_convs = [n for n in model.graph.node if n.op_type == "Conv" and n.name not in kept]
    assert quantized_convs and all(produced_by.get(n.input[1]) == "DequantizeLinear" for n in quantized_convs)


def test_part_segmenter_int8_graph_is_in_the_same_form(part_segmenter_int8):
    _, result = part_segmenter_int8
    _assert_tensorrt_form(onnx.load(str(result.path)))


@pytest.mark.parametrize("which", ["cls", "partseg"])
def test_int8_graph_keeps_names_dtypes_and_dynamic_axes(which, classifier_int8, part_segmenter_int8):
    fp32, result = classifier_int8[:2] if which == "cls" else part_segmenter_int8
    assert graph_specs(onnx.load(str(result.path))) == graph_specs(onnx.load(str(fp32)))
    session = _session(result.path)
    for batch, num_points in [(1, 1), (3, 2048)]:
        feeds = {"points": np.random.default_rng(0).uniform(-1, 1, (batch, num_points, 3)).astype(np.float32)}
        if which == "partseg":
            feeds["category"] = np.arange(batch, dtype=np.int64)
        logits = session.run(["logits"], feeds)[0]
        assert logits.shape[0] == batch and (which == "cls" or logits.shape[1] == num_points)


def test_int8_tracks_fp32_on_held_out_clouds(classifier_int8, classifier_version, test_split):
    fp32, result, _ = classifier_int8
    card = classifier_version.card
    clouds = np.stack(
        [normalize(s.points[resample_indices(len(s.points), card.num_points)], card.normalization) for s in test_split]
    ).astype(np.float32)
    labels = np.array([s.label for s in test_split])
    reference = _session(fp32).run(["logits"], {"points": clouds})[0].argmax(-1)
    quantized = _session(result.path).run(["logits"], {"points": clouds})[0].argmax(-1)
    fp32_acc, int8_acc = (reference == labels).mean(), (quantized == labels).mean()
    assert fp32_acc > 0.6  # the briefly trained model learned something, so the comparison means something
    assert (quantized == reference).mean() >= 0.9
    assert abs(int8_acc - fp32_acc) <= 0.05


def test_calibration_record_names_the_set(classifier_int8, classifier_calibration):
    _, result, _ = classifier_int8
    info = result.calibration
    assert (info.method, info.num_samples, info.seed) == ("minmax", classifier_calibration.num_samples, 0)
    assert info.data_hash == classifier_calibration.sha256


def test_second_run_reuses_the_cached_scales(classifier_int8):
    _, first, again = classifier_int8
    assert not first.cache_hit and again.cache_hit
    assert again.cache_path == first.cache_path and first.cache_path.is_file()
    assert again.sha256 == first.sha256  # the same graph, byte for byte
    # No calibration inference at all the second time: only the graph rewrite is left.
    assert (first.calibrated_clouds, again.calibrated_clouds) == (CALIBRATION_SAMPLES, 0)


def test_another_method_has_its_own_cache_entry(classifier_version, classifier_calibration, classifier_int8, tmp_path):
    _, first, _ = classifier_int8
    fp32 = classifier_version.variant_path("fp32")
    for method in ("entropy", "percentile"):
        result = quantize_int8(
            fp32,
            classifier_calibration.path,
            tmp_path / f"{method}.onnx",
            method=method,
            max_samples=16,
            cache_dir=first.cache_path.parent,
        )
        assert not result.cache_hit and result.cache_path != first.cache_path
        assert result.calibration.method == method and result.calibration.num_samples == 16
        check_qdq_graph(result.path)


def test_a_torn_cache_file_is_recomputed(classifier_version, classifier_calibration, classifier_int8, tmp_path):
    _, first, _ = classifier_int8
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / first.cache_path.name).write_text('{"CLS": "TensorsData", "da')
    fp32 = classifier_version.variant_path("fp32")
    result = quantize_int8(fp32, classifier_calibration.path, tmp_path / "int8.onnx", cache_dir=cache_dir)
    assert not result.cache_hit and result.sha256 == first.sha256


def test_quantized_biases_are_caught(classifier_version, classifier_calibration, tmp_path):
    """onnxruntime's default (QuantizeBias on) gives int32 bias DequantizeLinear nodes, which TensorRT rejects."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from pointserve.calibration.quantize import _CloudReader

    arrays = classifier_calibration.arrays()
    out = tmp_path / "int32-bias.onnx"
    quantize_static(
        str(classifier_version.variant_path("fp32")),
        str(out),
        _CloudReader({"points": arrays["points"][:8]}, ["points"], 8),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    with pytest.raises(CalibrationError, match="int32"):
        check_qdq_graph(out)


def test_a_nonzero_zero_point_is_caught(classifier_int8, tmp_path):
    _, result, _ = classifier_int8
    model = onnx.load(str(result.path))
    dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear")
    zero_point = next(t for t in model.graph.initializer if t.name == dq.input[2])
    shifted = numpy_helper.to_array(zero_point).copy()
    shifted.flat[0] = 3
    zero_point.CopyFrom(numpy_helper.from_array(shifted, zero_point.name))
    with pytest.raises(CalibrationError, match="non-zero zero point"):
        check_qdq_graph(model)


def test_unknown_method_and_missing_inputs_are_errors(classifier_version, classifier_calibration, part_segmenter):
    fp32 = classifier_version.variant_path("fp32")
    with pytest.raises(CalibrationError, match="unknown calibration method 'kl'"):
        quantize_int8(fp32, classifier_calibration.path, fp32.parent / "x.onnx", method="kl")
    _, partseg_fp32, _ = part_segmenter
    with pytest.raises(CalibrationError, match=r"no array for graph input\(s\) \['category'\]"):
        quantize_int8(partseg_fp32, classifier_calibration.path, fp32.parent / "x.onnx")
    assert not (fp32.parent / "x.onnx").exists()
