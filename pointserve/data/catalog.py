"""Every dataset by name: the built-in loaders (registered on first use, so ``import pointserve.data`` stays
cheap) and any registered with :func:`pointserve.data.registry.register_dataset`."""

from __future__ import annotations

from typing import Any

from pointserve.data.base import PointCloudDataset
from pointserve.data.registry import DATASET_INFO, DATASETS, DatasetInfo
from pointserve.errors import ConfigError


def ensure_builtin() -> None:
    """Import the built-in dataset modules; importing them registers their loaders."""
    from pointserve.data import lidar_scenes, modelnet, semantic_kitti, shapenet, shapes  # noqa: F401


def dataset_names() -> list[str]:
    ensure_builtin()
    return sorted(DATASETS)


def load_dataset(name: str, split: str, **options: Any) -> PointCloudDataset:
    """Load split ``split`` ("train" or "test") of dataset ``name``."""
    ensure_builtin()
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](split, **options)


def dataset_info(name: str) -> DatasetInfo | None:
    """The description a dataset was registered with (channels, label names, tasks, splits), if any."""
    ensure_builtin()
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASET_INFO.get(name)


__all__ = ["dataset_info", "dataset_names", "ensure_builtin", "load_dataset"]
