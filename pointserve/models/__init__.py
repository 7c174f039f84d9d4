"""Network definitions and a registry by architecture name.

>>> from pointserve.models import get_model, list_models
>>> model = get_model("pointnet_cls", num_classes=10)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from pointserve.errors import ConfigError
from pointserve.models.pointnet import PointNetClassifier, PointNetSegmenter, orthogonality_loss

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = builder
        return builder

    return wrap


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


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_model(name: str, **config: Any) -> nn.Module:
    """Build a registered architecture from its config (the ``config`` of a model card)."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    try:
        return _REGISTRY[name](**config)
    except TypeError as exc:
        raise ConfigError(f"bad configuration for model {name!r}: {exc}") from None


__all__ = ["get_model", "list_models", "orthogonality_loss", "register_model"]
