"""The ``int8-cpu`` variant: ONNX Runtime's fast CPU int8 form of the int8 variant's calibration (uint8 activations,
QOperator, max pooling as GlobalMaxPool), built, recorded and kept in step with ``int8``."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from pointserve.calibration.cpu_int8 import CPU_INT8_VARIANT, max_pool_over_points
from pointserve.calibration.variant import make_int8_cpu_variant, make_int8_variant
from pointserve.errors import ConfigError
from pointserve.export.variants import ensure_onnx_variants, expand_precisions
from pointserve.repository import Repository


@pytest.fixture()
def fresh_classifier(classifier_version, tmp_path):
    root = tmp_path / "repository"
    shutil.copytree(classifier_version.path.parent.parent, root)
    return Repository(root).open(classifier_version.name)


def _run(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_max_pooling_over_points_becomes_global_max_pool_with_the_same_values(fresh_classifier, tmp_path):
    model = onnx.load(str(fresh_classifier.variant_path("fp32")))
    before = sum(n.op_type == "ReduceMax" for n in model.graph.node)
    aliases = max_pool_over_points(model)
    assert before >= 1 and sum(n.op_type == "ReduceMax" for n in model.graph.node) == 0
    assert sum(n.op_type == "GlobalMaxPool" for n in model.graph.node) == before == len(aliases)
    onnx.checker.check_model(model)
    onnx.save(model, tmp_path / "pooled.onnx")
    points = np.random.default_rng(0).normal(0, 0.4, (3, 77, 3)).astype(np.float32)
    np.testing.assert_array_equal(_run(tmp_path / "pooled.onnx", {"points": points}),
                                  _run(fresh_classifier.variant_path("fp32"), {"points": points}))  # fmt: skip


def test_a_max_over_another_axis_is_left_alone():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4, "n"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph([helper.make_node("ReduceMax", ["x", "axes"], ["y"], keepdims=0)], "g", [x], [y], [axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert max_pool_over_points(model) == {} and model.graph.node[0].op_type == "ReduceMax"


def test_int8_cpu_is_the_int8_calibration_in_the_cpu_form(fresh_classifier, classifier_calibration):
    make_int8_variant(fresh_classifier, num_samples=64)
    path = make_int8_cpu_variant(fresh_classifier)
    variant = fresh_classifier.variant(CPU_INT8_VARIANT)
    assert (variant.precision, variant.backend, variant.source) == ("int8", "onnxruntime", "fp32")
    assert variant.calibration == fresh_classifier.variant("int8").calibration
    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    assert "QLinearConv" in ops and "ReduceMax" not in ops and "GlobalMaxPool" in ops
    zero_points = [t for t in graph.initializer if t.name.endswith("_zero_point") and t.data_type == TensorProto.UINT8]
    assert zero_points  # uint8 activations
    points = classifier_calibration.arrays()["points"]
    fp32, int8, cpu = (
        _run(fresh_classifier.variant_path(v), {"points": points}) for v in ("fp32", "int8", CPU_INT8_VARIANT)
    )
    agree_int8 = (int8.argmax(1) == fp32.argmax(1)).mean()
    agree_cpu = (cpu.argmax(1) == fp32.argmax(1)).mean()
    assert agree_cpu >= agree_int8 - 0.05, (agree_cpu, agree_int8)


def test_recalibrating_int8_rebuilds_int8_cpu_in_step(fresh_classifier):
    ensure_onnx_variants(fresh_classifier, ["int8", CPU_INT8_VARIANT], calibration={"num_samples": 32})
    first = fresh_classifier.variant(CPU_INT8_VARIANT).sha256
    make_int8_variant(fresh_classifier, num_samples=32, method="percentile")
    version = Repository(fresh_classifier.path.parent.parent).open(fresh_classifier.name)
    assert version.variant(CPU_INT8_VARIANT).calibration.method == "percentile"
    assert version.variant(CPU_INT8_VARIANT).sha256 != first


def test_all_onnx_variants_include_int8_cpu_and_tensorrt_refuses_it():
    assert expand_precisions("all", "onnxruntime") == ["fp32", "fp16", "int8", CPU_INT8_VARIANT]
    with pytest.raises(ConfigError, match="ONNX Runtime CPU form"):
        expand_precisions([CPU_INT8_VARIANT], "tensorrt")
