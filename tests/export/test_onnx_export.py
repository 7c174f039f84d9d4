"""Export to ONNX: named dynamic axes, one self-contained file, checker, parity with PyTorch, op errors."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_cases import NUM_POINTS, PARITY_SHAPES, cls_card, partseg_card

from pointserve.checkpoint import load_checkpoint
from pointserve.errors import ExportError
from pointserve.export import check_parity, export_model, io_specs
from pointserve.export.onnx_export import graph_specs, unsupported_op_name
from pointserve.repository.store import sha256_file


def _session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("which", ["cls", "partseg"])
def test_export_records_parity_within_tolerance_on_every_shape(which, cls_export, partseg_export):
    path, report = cls_export if which == "cls" else partseg_export
    shapes = [(p.batch, p.num_points) for p in report.parity]
    assert shapes == PARITY_SHAPES
    assert sum(n != NUM_POINTS for _, n in shapes) >= 4  # point counts never seen in training
    for result in report.parity:
        assert 0.0 <= result.max_abs_diff <= 1e-4, result
        assert result.argmax_equal, result
    assert report.max_abs_diff == max(p.max_abs_diff for p in report.parity)
    assert report.sha256 == sha256_file(path)
    assert report.size_bytes == path.stat().st_size


@pytest.mark.parametrize("which", ["cls", "partseg"])
def test_graph_is_one_checked_file_with_named_dynamic_axes(which, cls_export, partseg_export):
    path, report = cls_export if which == "cls" else partseg_export
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert report.opset >= 17
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == report.opset
    # Weights inside the file: no tensor points at external data and nothing else was written beside it.
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert sorted(p.name for p in path.parent.iterdir()) == ["fp32.onnx"]
    inputs, outputs = graph_specs(model)
    assert (inputs, outputs) == (report.inputs, report.outputs)
    assert [i.name for i in inputs] == (["points"] if which == "cls" else ["points", "category"])
    assert inputs[0].shape == ["batch", "num_points", 3]
    assert outputs[0].name == "logits"
    if which == "partseg":
        assert inputs[1].dtype == "int64" and inputs[1].shape == ["batch"]
        assert outputs[0].shape == ["batch", "num_points", partseg_card().num_outputs]
    else:
        assert outputs[0].shape == ["batch", cls_card().num_outputs]
    assert report.simplifier and report.simplifier.startswith("onnxsim")
    # Simplified: no training-only or no-op nodes; the classifier's batch norms are folded into its weights
    # (the part segmenter keeps one, after its split first head layer's Add, where no exporter folds it).
    op_types = [n.op_type for n in model.graph.node]
    assert not set(op_types) & {"Dropout", "Identity"}
    assert op_types.count("BatchNormalization") == (0 if which == "cls" else 1)


@pytest.mark.parametrize("batch,num_points", [(1, 1), (2, 4096)])
def test_exported_classifier_runs_at_1_and_4096_points(cls_checkpoint, cls_export, batch, num_points):
    path, _ = cls_export
    model, _ = load_checkpoint(cls_checkpoint)
    points = np.random.default_rng(3).uniform(-1, 1, (batch, num_points, 3)).astype(np.float32)
    logits = _session(path).run(["logits"], {"points": points})[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(points)).numpy()
    assert logits.shape == (batch, cls_card().num_outputs)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_part_segmentation_graph_uses_the_category(partseg_checkpoint, partseg_export):
    path, _ = partseg_export
    points = np.random.default_rng(4).uniform(-1, 1, (3, 300, 3)).astype(np.float32)
    session = _session(path)
    first = session.run(["logits"], {"points": points, "category": np.array([0, 1, 2], dtype=np.int64)})[0]
    other = session.run(["logits"], {"points": points, "category": np.array([2, 0, 1], dtype=np.int64)})[0]
    assert first.shape == (3, 300, partseg_card().num_outputs)
    assert not np.allclose(first, other)  # the one-hot category reaches the head


def test_parity_check_fails_for_a_graph_of_other_weights(cls_checkpoint, cls_export):
    path, _ = cls_export
    model, card = load_checkpoint(cls_checkpoint)
    with torch.no_grad():
        model.fc3.bias.add_(1e-3)  # a shift far above the 1e-4 tolerance
    with pytest.raises(ExportError, match=r"parity check failed at B=1, N=128: max \|Δlogit\| 0\.001"):
        check_parity(model, card, path, [(1, NUM_POINTS)])


class _EigenvalueHead(torch.nn.Module):
    """A module with an op the exporter has no translation for (a symmetric eigendecomposition)."""

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        gram = points.transpose(1, 2) @ points
        return torch.linalg.eigvalsh(gram)


def test_an_op_that_cannot_be_exported_is_named(tmp_path):
    out = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match=r"operator 'aten\._?linalg_eigh' has no ONNX translation") as info:
        export_model(_EigenvalueHead(), cls_card(), out)
    assert "\n" not in str(info.value)  # one line for the CLI
    assert not out.exists()


def test_op_name_is_found_in_torchscript_and_dynamo_messages():
    torchscript = RuntimeError("Exporting the operator 'aten::kthvalue' to ONNX opset version 17 is not supported")
    dynamo_inner = RuntimeError("No ONNX function found for <OpOverload(op='aten.kthvalue', overload='default')>.")
    dynamo = RuntimeError("Failed to convert the exported program to an ONNX model.")
    dynamo.__cause__ = dynamo_inner
    assert unsupported_op_name(torchscript) == "aten::kthvalue"
    assert unsupported_op_name(dynamo) == "aten.kthvalue"
    assert unsupported_op_name(RuntimeError("something else")) is None


def test_io_specs_follow_the_card():
    inputs, outputs = io_specs(cls_card())
    assert [(s.name, s.dtype, s.shape) for s in inputs] == [("points", "float32", ["batch", "num_points", 3])]
    assert [(s.name, s.dtype, s.shape) for s in outputs] == [("logits", "float32", ["batch", cls_card().num_outputs])]


def test_opset_below_17_is_refused(cls_checkpoint, tmp_path):
    from pointserve.export import export_onnx

    with pytest.raises(ExportError, match="opset 16 is too old"):
        export_onnx(cls_checkpoint, tmp_path / "m.onnx", opset=16)


def test_the_simplifier_never_renames_the_graphs_interface_dimensions():
    """onnxsim may hand an input's symbolic dimension back as ``unk__N`` (it did for pcn's sample_l inputs):
    the exporter's names are restored on inputs and outputs, fixed sizes are left alone."""
    import onnx
    from onnx import TensorProto, helper

    from pointserve.export.onnx_export import _restore_interface_dims

    def graph(dims_in, dims_out):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims_in)
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims_out)
        return helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))

    original = graph(["points_1", 3], ["points_1", 3])
    simplified = graph(["unk__0", 3], [None, 3])
    _restore_interface_dims(original, simplified)
    for value in (*simplified.graph.input, *simplified.graph.output):
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == "points_1" and dims[1].dim_value == 3
    onnx.checker.check_model(simplified)
