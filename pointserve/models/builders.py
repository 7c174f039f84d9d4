"""Builder functions of the PointNet family, registered by architecture name (as torchvision does)."""

from __future__ import annotations

from typing import Any

from torch import nn

from pointserve.models.pointnet import PointNetClassifier, PointNetSegmenter
from pointserve.models.registry import register_model


@register_model("pointnet_cls")
def pointnet_cls(num_classes: int, **config: Any) -> nn.Module:
    """PointNet classifier: (B, N, C) -> (B, K)."""
    return PointNetClassifier(num_classes=num_classes, **config)


@register_model("pointnet_seg")
def pointnet_seg(num_parts: int, **config: Any) -> nn.Module:
    """PointNet semantic segmentation: (B, N, C) -> (B, N, P)."""
    return PointNetSegmenter(num_parts=num_parts, **config)


@register_model("pointnet_partseg")
def pointnet_partseg(num_parts: int, num_categories: int, **config: Any) -> nn.Module:
    """PointNet part segmentation: (B, N, C), category (B,) -> (B, N, P)."""
    return PointNetSegmenter(num_parts=num_parts, num_categories=num_categories, **config)
