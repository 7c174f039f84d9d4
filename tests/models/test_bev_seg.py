"""The BEV family on real ``lidar_scenes`` scans: the preprocessor's pillars and tile indices against brute force,
the sparse network against its dense twin, a scan alone against the scan in a batch, and the exported graph
(plain ops, no scatter) against PyTorch in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from pointserve.card import ModelCard
from pointserve.data.lidar_scenes import CLASS_NAMES, generate_scan
from pointserve.models import get_spec
from pointserve.models.collate import batch_inputs, split
from pointserve.models.sbnet.bev_inputs import grid_shape, preprocess_scan

SPEC = get_spec("bev_seg")
OPTIONS = {"point_width": 16, "channels": 16, "bottleneck": 8, "head_width": 16}


class _Labels:
    part_names = list(CLASS_NAMES)


def _card() -> ModelCard:
    return ModelCard(
        architecture="bev_seg",
        config=SPEC.model_config(_Labels, OPTIONS),
        preprocessing=SPEC.preprocessing(OPTIONS),
        task="semantic_segmentation",
        class_names=["street_scene"],
        part_names=list(CLASS_NAMES),
        in_channels=4,
        num_points=4096,
        normalization="none",
    )


@pytest.fixture(scope="module")
def scans() -> list[np.ndarray]:
    return [generate_scan(0, i, split="test")[0] for i in range(2)]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = SPEC.build(_card())
    with torch.no_grad():
        for module in net.modules():  # non-trivial eval statistics: the dense twin must match through them
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    return net.eval()


def test_pillars_and_tiles_are_consistent(scans):
    p = _card().preprocessing
    arrays = preprocess_scan(scans[0], p)
    n, pillars, tile = len(scans[0]), len(arrays["pillar_tile"]), p["tile"]
    assert arrays["point_features"].shape == (n, 9) and 1000 < pillars < n
    pillar_rows = arrays["point_pillar"][arrays["pillar_points"]]
    assert (pillar_rows == np.arange(pillars)[:, None]).all()  # every listed point is its pillar's
    outside = arrays["point_pillar"] == pillars
    assert 0 < outside.sum() < 0.1 * n  # a few points beyond the 40 m grid: labelled without BEV context
    assert (arrays["tile_pillar"][arrays["pillar_tile"], arrays["pillar_pixel"]] == np.arange(pillars)).all()
    assert (np.bincount(arrays["tile_pillar"].ravel(), minlength=pillars + 1)[:pillars] == 1).all()
    height, width = grid_shape(p)
    tiles = len(arrays["tile_cell"])
    assert 0.1 < tiles / (height * width / tile**2) < 0.6  # genuinely sparse at the tile level
    # The d-dilated gathers against a brute-force map of each cell's tile row (inactive: V, outside: V + 1).
    slot = np.full((height, width), tiles * tile * tile, dtype=np.int64)
    for m, cell in enumerate(arrays["tile_cell"]):
        r, c = divmod(int(cell), width)
        slot[r : r + tile, c : c + tile] = m * tile * tile + np.arange(tile * tile).reshape(tile, tile)
    for d in (1, 2):
        padded = np.pad(slot, d, constant_values=tiles * tile * tile + 1)
        got = arrays[f"gather_tile_d{d}"] * tile * tile + arrays[f"gather_pixel_d{d}"]
        for m, cell in enumerate(arrays["tile_cell"]):
            r, c = divmod(int(cell), width)
            np.testing.assert_array_equal(got[m], padded[r : r + tile + 2 * d, c : c + tile + 2 * d])


def test_sparse_equals_the_dense_twin_and_a_scan_alone_equals_it_batched(scans, model):
    card = _card()
    feeds, layout = batch_inputs(SPEC, card, scans)
    tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}
    with torch.no_grad():
        sparse = model(**tensors)
        model.sparse = False
        try:
            dense = model(**tensors)
        finally:
            model.sparse = True
        assert float((sparse - dense).abs().max()) <= 1e-5
        for cloud, scan in zip(split(SPEC, card, {"logits": sparse.numpy()}, layout), scans, strict=True):
            alone = model(**{k: torch.from_numpy(v) for k, v in batch_inputs(SPEC, card, [scan])[0].items()})
            assert cloud["logits"].shape == (len(scan), len(CLASS_NAMES))
            assert np.abs(cloud["logits"] - alone.numpy()).max() <= 1e-5


def test_exported_graph_has_no_scatter_and_matches_pytorch(scans, model, tmp_path):
    from pointserve.export.onnx_export import trace_to_onnx

    card = _card()
    proto = trace_to_onnx(model, card)
    ops = {node.op_type for node in proto.graph.node}
    assert {"Gather", "Conv", "Gemm", "ReduceMax"} <= ops
    assert not {op for op in ops if "Scatter" in op}, ops
    assert ops <= {
        "Add", "BatchNormalization", "Concat", "ConstantOfShape", "Conv", "Gather", "Gemm", "Mul", "ReduceMax",
        "Relu", "Reshape", "Slice", "Transpose", "Shape", "Unsqueeze", "Squeeze", "Cast", "Expand",
    }, ops  # fmt: skip
    path = tmp_path / "bev.onnx"
    onnx.save(proto, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds, _ = batch_inputs(SPEC, card, scans)
    with torch.no_grad():
        expected = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()
    got = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})[0]
    assert np.abs(got - expected).max() <= 1e-4
    assert (got.argmax(1) == expected.argmax(1)).mean() > 0.999
