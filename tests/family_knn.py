"""A test-only network family: the plug-in point, proven. Not shipped.

``knn_edge_seg``: per-point semantic segmentation from each point's k nearest neighbours (an EdgeConv-like
layer, max over the edges). Its graph has two inputs — the points and their kNN indices, computed on the CPU by
the preprocessor with :func:`pointserve.geometry.knn` — and it batches with the ``concat`` policy: the clouds'
points are concatenated, the indices offset per cloud, and the sentinel (a missing neighbour) points at one zero
row appended in the graph. Nothing outside this file knows the family: registering the spec is all it takes
to train, export, convert, calibrate, bench and serve it.

Shapes:
    points:    (P, C) float32, P = all points of the batch
    neighbors: (P, k) int64 indices into the batch's points; P (one past the end) for a missing neighbour
    logits:    (P, num_parts) float32
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pointserve.card import ModelCard
from pointserve.geometry import knn
from pointserve.models import ArchitectureSpec, TensorSpec, register_architecture
from pointserve.models.spec import POINTS_DIM, POINTS_INPUT

NAME = "knn_edge_seg"
NEIGHBORS_INPUT = "neighbors"
DEFAULT_K = 8


def _inputs(card: ModelCard) -> list[TensorSpec]:
    k = int(card.preprocessing.get("k", DEFAULT_K))
    return [
        TensorSpec(name=POINTS_INPUT, dtype="float32", shape=[POINTS_DIM, card.in_channels]),
        TensorSpec(name=NEIGHBORS_INPUT, dtype="int64", shape=[POINTS_DIM, k]),
    ]


def _outputs(card: ModelCard) -> list[TensorSpec]:
    return [TensorSpec(name="logits", dtype="float32", shape=[POINTS_DIM, card.num_outputs])]


def preprocess(points: np.ndarray, card: ModelCard) -> dict[str, np.ndarray]:
    """The cloud and its k nearest neighbours in xyz (itself included); fewer than k points: sentinel-padded."""
    k = int(card.preprocessing.get("k", DEFAULT_K))
    n = len(points)
    neighbors = np.full((n, k), n, dtype=np.int64)  # n = the sentinel: one past this cloud's points
    found, _ = knn(points[:, :3], points[:, :3], min(k, n))
    neighbors[:, : found.shape[1]] = found
    return {POINTS_INPUT: points, NEIGHBORS_INPUT: neighbors}


def _build(in_channels: int = 3, num_parts: int = 2, width: int = 16):
    import torch
    from torch import nn

    class KnnEdgeSegmenter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.edge = nn.Linear(2 * in_channels, width)
            self.head = nn.Linear(width + in_channels, num_parts)

        def forward(self, points: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
            padded = torch.cat([points, points.new_zeros(1, points.shape[1])])  # row P: the sentinel's zeros
            gathered = padded[neighbors]  # (P, k, C): Gather, no scatter
            centre = points.unsqueeze(1).expand_as(gathered)
            edges = torch.relu(self.edge(torch.cat([centre, gathered - centre], dim=-1)))
            return self.head(torch.cat([edges.amax(dim=1), points], dim=-1))

    return KnnEdgeSegmenter()


def _model_config(dataset, options: dict[str, Any]) -> dict[str, Any]:
    return {"in_channels": dataset.in_channels, "num_parts": len(dataset.part_names), "width": 16}


SPEC = register_architecture(
    ArchitectureSpec(
        name=NAME,
        task="semantic_segmentation",
        builder=_build,
        model_config=_model_config,
        inputs=_inputs,
        outputs=_outputs,
        preprocess=preprocess,
        collate="concat",
        index_inputs={NEIGHBORS_INPUT: POINTS_DIM},
        preprocessing=lambda options: {"k": int(options.get("k", DEFAULT_K))},
        description="test-only: per-point labels from kNN edges; points + CPU kNN indices, concat batching",
    )
)
