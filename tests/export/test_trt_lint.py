"""The TensorRT-compatibility lint: what it catches, what it lets through, the export hook and its override, and
``pointserve doctor MODEL`` printing it."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from tiny_models import random_checkpoint, tiny_card

from pointserve.checkpoint import load_checkpoint
from pointserve.cli import main
from pointserve.errors import ExportError, TensorRTCompatibilityError
from pointserve.export import onnx_export
from pointserve.export.trt_lint import MAX_TOPK, check_tensorrt_compatible, lint_graph


class NearestToCentre(torch.nn.Module):
    """A ball query written as a sort: every point ordered by its distance to the cloud's centre (TopK over N)."""

    def __init__(self, k: int | None = None) -> None:
        super().__init__()
        self.k = k

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        distance = (points - points.mean(dim=1, keepdim=True)).pow(2).sum(-1)  # (B, N)
        k = self.k if self.k is not None else points.shape[1]
        return distance.topk(k, dim=1, largest=False)[1]


def _export(module: torch.nn.Module, example: torch.Tensor, dynamic: bool = False) -> onnx.ModelProto:
    shapes = {"points": {0: torch.export.Dim("batch"), 1: torch.export.Dim("num_points")}} if dynamic else None
    with torch.no_grad():
        program = torch.onnx.export(
            module.eval(), (example,), None, input_names=["points"], dynamo=True, dynamic_shapes=shapes, verbose=False
        )
    return program.model_proto


def _topk_name(model: onnx.ModelProto) -> str:
    return next(node.name for node in model.graph.node if node.op_type == "TopK")


def test_a_topk_over_4096_points_is_caught_naming_the_node() -> None:
    model = _export(NearestToCentre(), torch.randn(1, 4096, 3))
    report = lint_graph(model)
    assert not report.ok
    (error,) = report.errors
    assert (error.node, error.op_type) == (_topk_name(model), "TopK")
    assert "K = 4096 > 3840" in error.reason
    with pytest.raises(TensorRTCompatibilityError, match=rf"node '{_topk_name(model)}' \(TopK\): K = 4096 > 3840"):
        check_tensorrt_compatible(model)
    assert issubclass(TensorRTCompatibilityError, ExportError)


def test_topk_k_bounded_by_min_passes_and_an_unbounded_k_is_a_warning() -> None:
    class KnnLike(torch.nn.Module):  # DGCNN's K: min(20, N), dynamic N
        def forward(self, points):
            distance = (points - points.mean(dim=1, keepdim=True)).pow(2).sum(-1)
            return distance.topk(torch.sym_min(20, points.shape[1]), dim=1)[1]

    bounded = lint_graph(_export(KnnLike(), torch.randn(2, 64, 3), dynamic=True))
    assert bounded.findings == ()
    unbounded = lint_graph(_export(NearestToCentre(), torch.randn(2, 64, 3), dynamic=True))
    assert unbounded.ok and len(unbounded.warnings) == 1
    assert "no bound on it could be worked out" in unbounded.warnings[0].reason
    small = lint_graph(_export(NearestToCentre(k=MAX_TOPK), torch.randn(1, 4096, 3)))
    assert small.findings == ()


def _graph(nodes, inputs, outputs, initializers=(), opset=18, domains=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    imports = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, 1) for d in domains)]
    return helper.make_model(graph, opset_imports=imports)


def _scatter_nd(reduction: str | None) -> onnx.ModelProto:
    attrs = {"reduction": reduction} if reduction else {}
    node = helper.make_node("ScatterND", ["data", "indices", "updates"], ["out"], name="pool_scatter", **attrs)
    return _graph(
        [node],
        [
            helper.make_tensor_value_info("data", TensorProto.FLOAT, [8, 4]),
            helper.make_tensor_value_info("indices", TensorProto.INT64, [5, 1]),
            helper.make_tensor_value_info("updates", TensorProto.FLOAT, [5, 4]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [8, 4])],
    )


def test_scatter_nd_with_add_reduction_is_caught() -> None:
    model = _scatter_nd("add")
    onnx.checker.check_model(model, full_check=True)
    (error,) = lint_graph(model).errors
    assert (error.node, error.op_type) == ("pool_scatter", "ScatterND")
    assert "reduction='add'" in error.reason
    with pytest.raises(TensorRTCompatibilityError, match=r"'pool_scatter' \(ScatterND\): reduction='add'"):
        check_tensorrt_compatible(model)
    assert lint_graph(_scatter_nd("none")).findings == ()
    assert lint_graph(_scatter_nd(None)).findings == ()


def test_custom_domain_ops_and_dynamic_loops_are_caught() -> None:
    value = helper.make_tensor_value_info
    custom = _graph(
        [helper.make_node("FurthestPointSample", ["x"], ["y"], name="fps", domain="pointnet2_ops")],
        [value("x", TensorProto.FLOAT, [1, 8, 3])],
        [value("y", TensorProto.INT64, [1, 4])],
        domains=["pointnet2_ops"],
    )
    (error,) = lint_graph(custom).errors
    assert (error.node, error.op_type) == ("fps", "FurthestPointSample") and "'pointnet2_ops'" in error.reason

    def loop(trip: str | None, initializers=()) -> onnx.ModelProto:
        body = helper.make_graph(
            [
                helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                helper.make_node("Add", ["acc_in", "one"], ["acc_out"]),
            ],
            "body",
            [
                value("i", TensorProto.INT64, []),
                value("cond_in", TensorProto.BOOL, []),
                value("acc_in", TensorProto.FLOAT, []),
            ],
            [value("cond_out", TensorProto.BOOL, []), value("acc_out", TensorProto.FLOAT, [])],
            initializer=[numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one")],
        )
        node = helper.make_node("Loop", [trip or "", "cond", "start"], ["total"], name="sampling_loop", body=body)
        inputs = [value("cond", TensorProto.BOOL, []), value("start", TensorProto.FLOAT, [])]
        if trip == "n":
            inputs.append(value("n", TensorProto.INT64, []))
        return _graph([node], inputs, [value("total", TensorProto.FLOAT, [])], initializers)

    (error,) = lint_graph(loop(None)).errors
    assert error.node == "sampling_loop" and "no trip count" in error.reason
    (error,) = lint_graph(loop("n")).errors
    assert "'n' is not a constant" in error.reason
    constant = loop("count", [numpy_helper.from_array(np.array(512, dtype=np.int64), "count")])
    assert lint_graph(constant).findings == ()


@pytest.fixture(scope="module")
def pointnet_checkpoint(tmp_path_factory):
    return random_checkpoint(tmp_path_factory.mktemp("lint-pointnet"), tiny_card("pointnet_cls"), seed=0)


def _with_scatter_add(trace):
    """The real trace plus a ScatterND(reduction="add") on constants (an op TensorRT cannot take)."""

    def traced(*args, **kwargs):
        graph = trace(*args, **kwargs)
        graph.graph.initializer.extend(
            [
                numpy_helper.from_array(np.zeros((4, 2), np.float32), "lint_data"),
                numpy_helper.from_array(np.array([[1], [1]], np.int64), "lint_indices"),
                numpy_helper.from_array(np.ones((2, 2), np.float32), "lint_updates"),
            ]
        )
        graph.graph.node.append(
            helper.make_node(
                "ScatterND",
                ["lint_data", "lint_indices", "lint_updates"],
                ["lint_out"],
                name="voxel_sum",
                reduction="add",
            )
        )
        return graph

    return traced


def test_the_export_fails_on_the_lint_and_writes_nothing(pointnet_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "trace_to_onnx", _with_scatter_add(onnx_export.trace_to_onnx))
    model, card = load_checkpoint(pointnet_checkpoint)
    out = tmp_path / "fp32.onnx"
    with pytest.raises(
        TensorRTCompatibilityError, match=r"node 'voxel_sum' \(ScatterND\): reduction='add'.*--allow-trt"
    ):
        onnx_export.export_model(model, card, out, simplify_graph=False, parity_shapes=[(2, 64)])
    assert not out.exists()


def test_a_clean_export_passes_the_override_works_and_doctor_prints_the_lint(
    pointnet_checkpoint, tmp_path, monkeypatch, capsys
):
    from pointserve.repository import Repository

    repository = tmp_path / "repo"
    assert main(["export", str(pointnet_checkpoint), "-o", str(repository), "--name", "clean"]) == 0
    capsys.readouterr()
    clean = Repository(repository).open("clean")
    assert clean.manifest.export["tensorrt_lint"] == []
    assert lint_graph(clean.variant_path("fp32")).ok
    assert main(["doctor", "clean", "--repository", str(repository)]) == 0
    out = capsys.readouterr().out
    assert "TensorRT lint of clean v1:" in out and "fp32: TensorRT lint: passed" in out

    monkeypatch.setattr(onnx_export, "trace_to_onnx", _with_scatter_add(onnx_export.trace_to_onnx))
    argv = ["export", str(pointnet_checkpoint), "-o", str(repository), "--name", "scatter", "--no-simplify"]
    assert main(argv) == 2
    assert "node 'voxel_sum' (ScatterND)" in capsys.readouterr().err
    assert main([*argv, "--allow-trt-incompatible"]) == 0
    assert "TensorRT lint error: node 'voxel_sum' (ScatterND)" in capsys.readouterr().out
    assert main(["doctor", "scatter", "--repository", str(repository)]) == 0
    out = capsys.readouterr().out
    assert "fp32: TensorRT lint: 1 error(s), 0 warning(s)" in out and "node 'voxel_sum' (ScatterND)" in out
    (finding,) = Repository(repository).open("scatter").manifest.export["tensorrt_lint"]
    assert (finding["severity"], finding["node"], finding["op_type"]) == ("error", "voxel_sum", "ScatterND")
