"""Network definitions and a registry by architecture name.

    >>> from pointserve.models import get_model, list_models
    >>> model = get_model("pointnet_cls", num_classes=10)

Importing this package does not import torch; building a model does.
"""

from __future__ import annotations

from typing import Any

from pointserve.models.registry import get_model, list_models, register_model


def __getattr__(name: str) -> Any:
    if name == "orthogonality_loss":
        from pointserve.models.pointnet import orthogonality_loss

        return orthogonality_loss
    raise AttributeError(f"module 'pointserve.models' has no attribute {name!r}")


__all__ = ["get_model", "list_models", "orthogonality_loss", "register_model"]
