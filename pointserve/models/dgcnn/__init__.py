"""The DGCNN family (Wang et al., TOG 2019): ``dgcnn_cls`` and ``dgcnn_partseg``, in the layout of
github.com/antao97/dgcnn.pytorch (whose checkpoints import with ``--format dgcnn.antao97``).

This file is the family's registration. The graph takes the raw cloud (identity preprocessor): every EdgeConv
computes its kNN graph inside the graph (MatMul + TopK, see :mod:`pointserve.models.dgcnn.network`, imported
with torch only when a model is built).

Batching: the ``bucket`` policy — only clouds of the same size share a batch, and nothing is padded. Neither
of the other policies is exact for DGCNN:

* ``repeat`` (pad a cloud by cycling its own points) changes the answer: a repeated point is at distance 0 from
  its original, so it takes a slot in the k nearest neighbours of that point and of the points around it,
  pushing out a real neighbour (a different graph in every EdgeConv), and the classifier's mean pool counts
  the copies. Max pooling alone would forgive repeats; the kNN graph and the mean do not.
* ``concat`` (one flat cloud per batch) would need the kNN restricted to each cloud (a mask over a B·N x B·N
  distance matrix): quadratic in the batch's points instead of in each cloud's.

With ``bucket`` every cloud of a batch is exactly as it would be alone, and the batched graph computes each
cloud's kNN from its own (N, N) block, so an answer never depends on what it was batched with. The service's
batcher groups requests by point count for this policy; training and evaluation resample every cloud to the
card's ``num_points``, so their batches are always one size.

The training augmentation is the shared one without point dropout (which copies the first point over up to
87.5 % of the cloud: kNN graphs of mostly duplicates).

Hyper-parameters (``model_options``, or the training config's ``dropout``): ``k`` (20), ``emb_dims`` (1024),
``dropout`` (0.5), the reference's defaults; they are the card's ``config`` (the kNN is in the graph, so there is
no CPU preprocessing to parametrise).

Shapes:
    points:   (B, N, C) float32 (part segmentation: C = 3)
    category: (B,) int64 object category (part segmentation only)
    logits:   (B, K) classification, (B, N, P) part segmentation
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pointserve.card import ModelCard
from pointserve.data.transforms import augment as shared_augment
from pointserve.models.registry import register_architecture
from pointserve.models.spec import (
    ArchitectureSpec,
    logits_outputs,
    points_and_category_inputs,
)

DEFAULT_K = 20
DEFAULT_EMB_DIMS = 1024
DEFAULT_DROPOUT = 0.5
# Ops a kNN distance is computed with, walked back from each TopK to the MatMul of x^T x (int8 keeps them float).
_DISTANCE_OPS = frozenset(
    {"MatMul", "Mul", "Sub", "Add", "Neg", "Pow", "ReduceSum", "Transpose", "Reshape", "Unsqueeze", "Squeeze"}
)


def augment(points: np.ndarray, rng: np.random.Generator, seg: np.ndarray | None = None):
    """The shared augmentation (up-axis rotation, anisotropic scale, jitter, shuffle) without point dropout,
    which would fill kNN graphs with copies of one point."""
    return shared_augment(points, rng, seg, dropout=False)


def _network_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "k": int(options.get("k", DEFAULT_K)),
        "emb_dims": int(options.get("emb_dims", DEFAULT_EMB_DIMS)),
        "dropout": float(options.get("dropout", DEFAULT_DROPOUT)),
    }


def _classifier_config(dataset, options: Mapping[str, Any]) -> dict[str, Any]:
    return {"num_classes": len(dataset.class_names), "in_channels": dataset.in_channels, **_network_options(options)}


def _part_segmenter_config(dataset, options: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "num_parts": len(dataset.part_names),
        "num_categories": len(dataset.class_names),
        "in_channels": dataset.in_channels,
        **_network_options(options),
    }


def _build_classifier(**config: Any):
    from pointserve.models.dgcnn.network import DgcnnClassifier

    return DgcnnClassifier(**config)


def _build_part_segmenter(**config: Any):
    from pointserve.models.dgcnn.network import DgcnnPartSegmenter

    return DgcnnPartSegmenter(**config)


def knn_distance_nodes(graph, card: ModelCard) -> list[str]:
    """The nodes that compute each kNN's distances (walked back from every TopK's input through
    :data:`_DISTANCE_OPS`), kept in float by int8: quantising x^T x to 8 bits reorders near neighbours, so
    every later layer would see another graph. ``graph`` is an ``onnx.ModelProto``."""
    producers = {out: node for node in graph.graph.node for out in node.output}
    found: list[str] = []
    seen: set[str] = set()
    for node in graph.graph.node:
        if node.op_type != "TopK":
            continue
        stack = [node.input[0]]
        while stack:
            producer = producers.get(stack.pop())
            if producer is None or producer.name in seen or producer.op_type not in _DISTANCE_OPS:
                continue
            seen.add(producer.name)
            found.append(producer.name)
            if producer.op_type != "MatMul":  # the MatMul of x^T x is the start of the distance
                stack.extend(producer.input)
    return found


def _parity_shapes(card: ModelCard) -> list[tuple[int, int]]:
    """(B, N) for the export check: the training size, odd sizes above and below k, one point, 2x the size."""
    return list(dict.fromkeys([(1, card.num_points), (4, 300), (3, 77), (2, 2 * card.num_points), (2, 7), (1, 1)]))


def _register(name: str, task, builder, model_config, description: str) -> ArchitectureSpec:
    return register_architecture(
        ArchitectureSpec(
            name=name,
            task=task,
            builder=builder,
            model_config=model_config,
            inputs=points_and_category_inputs,
            outputs=logits_outputs,
            collate="bucket",
            augment=augment,
            int8_float_nodes=knn_distance_nodes,
            parity_shapes=_parity_shapes,
            description=description,
        )
    )


DGCNN_CLS = _register(
    "dgcnn_cls", "classification", _build_classifier, _classifier_config, "DGCNN classifier: (B, N, C) -> (B, K)"
)
DGCNN_PARTSEG = _register(
    "dgcnn_partseg",
    "part_segmentation",
    _build_part_segmenter,
    _part_segmenter_config,
    "DGCNN part segmentation: (B, N, 3), category (B,) -> (B, N, P)",
)

__all__ = ["DEFAULT_EMB_DIMS", "DEFAULT_K", "DGCNN_CLS", "DGCNN_PARTSEG", "augment", "knn_distance_nodes"]
