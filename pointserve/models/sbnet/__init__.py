"""The SBNet family (Ren et al., "SBNet: Sparse Blocks Network for Fast Inference", CVPR 2018): sparse-block
convolutions over a bird's-eye-view grid, run only where a mask (the dilated occupancy of a LiDAR scan) is active.

``bev_seg``: semantic segmentation of LiDAR scans (x y z intensity, metres): pillars, a PointNet per pillar, a
BEV pseudo-image, SBNet sparse bottlenecks on the active tiles, per-point labels. This file is the family's
registration; the host side (block geometry, ``reduce_mask``, gather / scatter indices) is numpy in
:mod:`pointserve.geometry.blocks`, the preprocessor :mod:`pointserve.models.sbnet.bev_inputs`; the ops
(:mod:`pointserve.models.sbnet.ops`) and the network (:mod:`pointserve.models.sbnet.network`) import torch and are
imported only when a model is built. Scans are not normalised (the grid is metric); clouds share a batch with
the ``concat`` policy (each scan its own H x W cells of one pseudo-image; the shared zero row is the sentinel).

Hyper-parameters (``model_options``): the grid (``x_range``, ``y_range``, ``pillar_size``), ``tile``,
``max_points_per_pillar``, ``mask_dilation``, ``dilations`` (one sparse bottleneck each, 1 or 2), ``point_width``,
``channels``, ``bottleneck``, ``head_width``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pointserve.card import ModelCard
from pointserve.models.graph_rules import compute_nodes_near_input
from pointserve.models.registry import register_architecture
from pointserve.models.sbnet.bev_inputs import DILATIONS, POINT_FEATURES, gather_names, grid_shape, preprocess_scan
from pointserve.models.sbnet.bev_inputs import settings as bev_settings
from pointserve.models.spec import (
    BATCH_DIM,
    POINTS_DIM,
    SEGMENT_START_INPUT,
    ArchitectureSpec,
    TensorSpec,
)

CELLS_DIM, PILLARS_DIM, TILES_DIM = "cells", "pillars", "tiles"
_NETWORK: dict[str, Any] = {"point_width": 32, "channels": 32, "bottleneck": 16, "head_width": 64}


def _model_config(dataset, options: Mapping[str, Any]) -> dict[str, Any]:
    p = bev_settings(options)
    return {
        "num_classes": len(dataset.part_names),
        "grid_shape": list(grid_shape(p)),
        "tile": int(p["tile"]),
        "dilations": p["dilations"],
        "in_features": POINT_FEATURES,
        **{k: int(options.get(k, v)) for k, v in _NETWORK.items()},
    }


def _inputs(card: ModelCard) -> list[TensorSpec]:
    p = card.preprocessing
    tile, slots = int(p["tile"]), int(p["max_points_per_pillar"])
    specs = [
        TensorSpec(name="point_features", dtype="float32", shape=[POINTS_DIM, POINT_FEATURES]),
        TensorSpec(name="point_pillar", dtype="int64", shape=[POINTS_DIM]),
        TensorSpec(name="pillar_points", dtype="int64", shape=[PILLARS_DIM, slots]),
        TensorSpec(name="pillar_tile", dtype="int64", shape=[PILLARS_DIM]),
        TensorSpec(name="pillar_pixel", dtype="int64", shape=[PILLARS_DIM]),
        TensorSpec(name="tile_pillar", dtype="int64", shape=[TILES_DIM, tile * tile]),
    ]
    for d in DILATIONS:
        specs += [
            TensorSpec(name=name, dtype="int64", shape=[TILES_DIM, tile + 2 * d, tile + 2 * d])
            for name in gather_names(d)
        ]
    specs.append(TensorSpec(name="tile_cell", dtype="int64", shape=[TILES_DIM]))
    specs.append(TensorSpec(name=SEGMENT_START_INPUT, dtype="int64", shape=[BATCH_DIM]))
    return specs


def _outputs(card: ModelCard) -> list[TensorSpec]:
    return [TensorSpec(name="logits", dtype="float32", shape=[POINTS_DIM, card.num_outputs])]


def _index_inputs() -> dict[str, str]:
    """What each index input points into (the concat collate offsets it per cloud; pixels are tile-local)."""
    index = {"point_pillar": PILLARS_DIM, "pillar_points": POINTS_DIM, "pillar_tile": TILES_DIM}
    index["tile_pillar"] = PILLARS_DIM
    index.update({gather_names(d)[0]: TILES_DIM for d in DILATIONS})
    index["tile_cell"] = CELLS_DIM
    return index


def _fixed_sizes(card: ModelCard) -> dict[str, int]:
    height, width = grid_shape(card.preprocessing)
    return {CELLS_DIM: height * width}


def preprocess(points: np.ndarray, card: ModelCard) -> dict[str, np.ndarray]:
    """One scan (n, 4) -> pillars and block indices (:func:`~pointserve.models.sbnet.bev_inputs.preprocess_scan`)."""
    return preprocess_scan(points, card.preprocessing)


def bev_augment(points: np.ndarray, rng: np.random.Generator, seg: np.ndarray | None = None):
    """LiDAR training augmentation: a rotation about the sensor's z axis, a mirror across x, a global scale of
    0.95-1.05 (intensity kept); the points' order and count are unchanged."""
    out = np.array(points, dtype=np.float32, copy=True)
    angle = rng.uniform(-np.pi, np.pi)
    c, s = np.cos(angle), np.sin(angle)
    x, y = out[:, 0].copy(), out[:, 1].copy()
    out[:, 0], out[:, 1] = c * x - s * y, s * x + c * y
    if rng.random() < 0.5:
        out[:, 1] = -out[:, 1]
    out[:, :3] *= rng.uniform(0.95, 1.05)
    return out, seg


def point_layers(graph, card: ModelCard) -> list[str]:
    """int8 keeps the per-point PointNet in float: its input mixes metres over +-40 m with centimetre offsets
    and intensity in one tensor, which one int8 scale cannot hold."""
    return compute_nodes_near_input(graph, "point_features", hops=2)


def _build(**config: Any):
    from pointserve.models.sbnet.network import BevSegmenter

    return BevSegmenter(**config)


def _parity_shapes(card: ModelCard) -> list[tuple[int, int]]:
    return list(dict.fromkeys([(1, card.num_points), (3, 777), (2, 4096), (1, 1)]))


BEV_SEG = register_architecture(
    ArchitectureSpec(
        name="bev_seg",
        task="semantic_segmentation",
        builder=_build,
        model_config=_model_config,
        inputs=_inputs,
        outputs=_outputs,
        preprocess=preprocess,
        collate="concat",
        index_inputs=_index_inputs(),
        preprocessing=bev_settings,
        augment=bev_augment,
        parity_shapes=_parity_shapes,
        fixed_sizes=_fixed_sizes,
        int8_float_nodes=point_layers,
        normalization="none",
        max_points=131_072,  # whole scans: a 64-beam KITTI scan holds ~120,000 points
        description="LiDAR BEV segmentation: pillars, SBNet sparse residual blocks, a label per point",
    )
)

__all__ = ["BEV_SEG", "bev_augment", "preprocess"]
