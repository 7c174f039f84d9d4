"""Network families and the registry of their :class:`ArchitectureSpec` s, by architecture name.

    >>> from pointserve.models import get_model, get_spec, list_models
    >>> spec = get_spec("pointnet_cls")          # what the graph takes and gives, how to batch it
    >>> model = get_model("pointnet_cls", num_classes=10)

A family is one file (or folder) here that registers its specs. Importing this package registers the
built-in families without importing torch; building a model does.
"""

from __future__ import annotations

from pointserve.models import dgcnn, pcn, pointnet, sbnet  # noqa: F401  (register the built-in families)
from pointserve.models.registry import get_model, get_spec, list_models, register_architecture
from pointserve.models.spec import ArchitectureSpec, TensorSpec

__all__ = ["ArchitectureSpec", "TensorSpec", "get_model", "get_spec", "list_models", "register_architecture"]
