"""DGCNN: shapes, the per-point EdgeConv rewrite against the reference's edge-tensor convolution, kNN in the
graph, why it batches with the ``bucket`` policy, and its exported graph (ops, the TopK bound, the int8 rule)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from tiny_models import random_checkpoint, tiny_card

from pointserve.errors import InputError
from pointserve.models import get_model, get_spec
from pointserve.models.collate import batch_inputs
from pointserve.models.dgcnn.network import edge_conv_first, graph_feature, knn

BUILD = {
    "dgcnn_cls": {"num_classes": 4, "k": 6, "emb_dims": 32},
    "dgcnn_partseg": {"num_parts": 5, "num_categories": 3, "k": 6, "emb_dims": 32},
}


def _build(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = get_model(name, **BUILD[name])
    with torch.no_grad():  # batch-norm statistics away from (0, 1), so they matter
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _run(model, points, category=None):
    with torch.no_grad():
        return model(points) if model.task == "classification" else model(points, category)


@pytest.mark.parametrize("name", sorted(BUILD))
@pytest.mark.parametrize("num_points", [1, 4, 37])  # fewer points than k, and more
def test_output_shapes_for_clouds_smaller_and_larger_than_k(name: str, num_points: int) -> None:
    model = _build(name)
    out = _run(model, torch.randn(2, num_points, 3), torch.tensor([0, 2]))
    expected = (2, 4) if name == "dgcnn_cls" else (2, num_points, 5)
    assert out.shape == expected and torch.isfinite(out).all()


def test_knn_is_the_reference_formula_and_includes_each_point() -> None:
    x = torch.randn(2, 5, 30, dtype=torch.float64)
    idx = knn(x, 7)
    assert idx.shape == (2, 30, 7)
    assert torch.equal(idx[..., 0], torch.arange(30).expand(2, 30))  # itself first: distance 0
    exact = torch.cdist(x.transpose(1, 2), x.transpose(1, 2)).topk(7, dim=-1, largest=False)[1]
    assert torch.equal(idx.sort(-1)[0], exact.sort(-1)[0])
    assert knn(x[:, :, :3], 7).shape == (2, 3, 3)  # k = min(k, N)


def test_the_per_point_edge_convolution_equals_convolving_the_edge_features() -> None:
    torch.manual_seed(1)
    block = _build("dgcnn_cls").conv2.double()
    x = torch.randn(3, 64, 25, dtype=torch.float64)
    reference = block(graph_feature(x, 6))  # the reference: Conv2d over [x_j - x_i, x_i], (B, F, N, k)
    ours = edge_conv_first(block, x, 6)
    assert torch.allclose(ours.amax(-1), reference.amax(-1), atol=1e-12)


def _clouds(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, 3)).astype(np.float32) for n in sizes]


@pytest.mark.parametrize("name", sorted(BUILD))
def test_a_cloud_answers_the_same_alone_and_batched_with_clouds_of_its_size(name: str) -> None:
    model, card = _build(name), tiny_card(name)
    spec = get_spec(name)
    assert spec.collate == "bucket"
    clouds = _clouds([40, 40, 40])
    categories = [0, 1, 2] if card.needs_category else None
    feeds, _ = batch_inputs(spec, card, clouds, categories)
    batched = _run(model, *[torch.from_numpy(feeds[n]) for n in spec.input_names(card)])
    for i, cloud in enumerate(clouds):
        alone_feeds, _ = batch_inputs(spec, card, [cloud], [categories[i]] if categories else None)
        alone = _run(model, *[torch.from_numpy(alone_feeds[n]) for n in spec.input_names(card)])
        assert (alone[0] - batched[i]).abs().max() <= 1e-5
    with pytest.raises(InputError, match="bucket policy"):
        batch_inputs(spec, card, _clouds([40, 41]), [0, 1] if categories else None)


def test_repeat_padding_would_change_the_answer() -> None:
    """Why DGCNN does not batch with ``repeat``: cycled copies of a cloud's points change its kNN graphs (and the
    classifier's mean pool), unlike PointNet's max pool."""
    model = _build("dgcnn_cls")
    cloud = torch.from_numpy(_clouds([30])[0])[None]
    padded = torch.cat([cloud, cloud[:, :10]], dim=1)
    assert (_run(model, cloud) - _run(model, padded)).abs().max() > 1e-3


def test_the_training_augmentation_never_repeats_a_point() -> None:
    spec = get_spec("dgcnn_cls")
    points = _clouds([256])[0]
    augmented, _ = spec.augment(points, np.random.default_rng(0), None)
    assert len(np.unique(augmented, axis=0)) == len(points)


def test_exported_graph_ops_topk_bound_and_int8_rule(tmp_path) -> None:
    import onnx

    from pointserve.checkpoint import load_checkpoint
    from pointserve.export.onnx_export import export_model
    from pointserve.export.trt_lint import lint_graph

    card = tiny_card("dgcnn_cls")
    model, card = load_checkpoint(random_checkpoint(tmp_path / "ckpt", card, seed=2))
    report = export_model(model, card, tmp_path / "fp32.onnx", parity_shapes=[(2, 50), (1, 5), (1, 1)])
    assert report.max_abs_diff <= 1e-4 and report.tensorrt_lint == []
    graph = onnx.load(str(tmp_path / "fp32.onnx"))
    ops = Counter(node.op_type for node in graph.graph.node)
    assert ops["TopK"] == 4  # one kNN per EdgeConv: the dynamic graph
    assert not {"ScatterND", "ScatterElements", "Scatter"} & set(ops)
    assert all(node.domain in ("", "ai.onnx") for node in graph.graph.node)
    assert lint_graph(graph).findings == ()  # K = Min(k, N) is bounded by k
    float_nodes = get_spec("dgcnn_cls").int8_float_nodes(graph, card)
    by_name = {node.name: node.op_type for node in graph.graph.node}
    assert Counter(by_name[n] for n in float_nodes)["MatMul"] == 4  # every kNN's x^T x
    assert "Conv" not in {by_name[n] for n in float_nodes}


def test_part_segmentation_takes_xyz_only() -> None:
    with pytest.raises(ValueError, match="xyz only"):
        get_model("dgcnn_partseg", num_parts=2, num_categories=2, in_channels=6)
