"""The PointNet family (Qi et al., CVPR 2017): ``pointnet_cls``, ``pointnet_seg``, ``pointnet_partseg``.

This file is the family's registration: its specs name the graph's tensors, an identity preprocessor (PointNet
needs nothing computed on the CPU), the ``repeat`` collate policy (exact: a repeated point changes no max-pool),
the feature-transform regulariser as the auxiliary loss, and the int8 rule. The modules themselves are in
:mod:`pointserve.models.pointnet.network` (imported, with torch, only when a model is built). Weights from
github.com/fxia22/pointnet.pytorch load into the same architectures with ``layout="pointnet.pytorch"``.

Shapes:
    points:   (B, N, C) float32, xyz first
    category: (B,) int64 object category (part segmentation only)
    logits:   (B, K) classification, (B, N, P) segmentation
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pointserve.card import ModelCard
from pointserve.models.graph_rules import compute_nodes_near_input
from pointserve.models.registry import register_architecture
from pointserve.models.spec import (
    POINTS_INPUT,
    ArchitectureSpec,
    logits_outputs,
    points_and_category_inputs,
)


def _build_classifier(num_classes: int, **config: Any):
    from pointserve.models.pointnet.network import PointNetClassifier

    return PointNetClassifier(num_classes=num_classes, **config)


def _build_segmenter(num_parts: int, **config: Any):
    from pointserve.models.pointnet.network import PointNetSegmenter

    return PointNetSegmenter(num_parts=num_parts, **config)


def _common(dataset, options: Mapping[str, Any]) -> dict[str, Any]:
    return {"in_channels": dataset.in_channels, "feature_transform": bool(options.get("feature_transform", False))}


def _classifier_config(dataset, options: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "num_classes": len(dataset.class_names),
        "dropout": float(options.get("dropout", 0.3)),
        **_common(dataset, options),
    }


def _segmenter_config(dataset, options: Mapping[str, Any]) -> dict[str, Any]:
    return {"num_parts": len(dataset.part_names), **_common(dataset, options)}


def _part_segmenter_config(dataset, options: Mapping[str, Any]) -> dict[str, Any]:
    return {**_segmenter_config(dataset, options), "num_categories": len(dataset.class_names)}


def feature_transform_loss(model, inputs: dict[str, Any]):
    """PointNet's training forward pass: ``(logits, ||I - A A^T||_F^2)`` of the feature transform A (0 without)."""
    import torch

    from pointserve.models.pointnet.network import orthogonality_loss

    logits, transform = model.forward_with_transform(**inputs)
    if transform is None:
        return logits, torch.zeros((), device=logits.device)
    return logits, orthogonality_loss(transform.float())


def coordinate_layers(graph, card: ModelCard) -> list[str]:
    """Segmentation keeps the layers on raw coordinates in float (the input T-Net, its alignment matmul, the
    first shared-MLP layer); classification quantises everything.

    Measured on the converged shapes part-segmentation model: all-int8 lost 2.07 mIoU points against fp32,
    these few layers (3 or 64 channels wide) in float brought the loss to 0.40. Segmentation labels every
    point from features of its own coordinates, so their rounding shows directly; a classifier max-pools it
    away (measured: all-int8 -0.83 points, with these layers in float -1.16, 2 of 600 clouds: noise).
    """
    if card.task == "classification":
        return []
    return compute_nodes_near_input(graph, POINTS_INPUT, hops=2)


def _register(name: str, task, builder, model_config, description: str) -> ArchitectureSpec:
    """What every PointNet shares: raw points (+ category) in, repeat batching, the feature-transform loss and
    the coordinate-layer int8 rule, logits per cloud (classification) or per point."""
    return register_architecture(
        ArchitectureSpec(
            name=name,
            task=task,
            builder=builder,
            model_config=model_config,
            inputs=points_and_category_inputs,
            outputs=logits_outputs,
            collate="repeat",
            auxiliary_loss=feature_transform_loss,
            int8_float_nodes=coordinate_layers,
            description=description,
        )
    )


POINTNET_CLS = _register(
    "pointnet_cls", "classification", _build_classifier, _classifier_config, "PointNet classifier: (B, N, C) -> (B, K)"
)
POINTNET_SEG = _register(
    "pointnet_seg",
    "semantic_segmentation",
    _build_segmenter,
    _segmenter_config,
    "PointNet semantic segmentation: (B, N, C) -> (B, N, P)",
)
POINTNET_PARTSEG = _register(
    "pointnet_partseg",
    "part_segmentation",
    _build_segmenter,
    _part_segmenter_config,
    "PointNet part segmentation: (B, N, C), category (B,) -> (B, N, P)",
)
