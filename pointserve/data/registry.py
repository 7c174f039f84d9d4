"""Datasets by name. Each loader returns a :class:`PointCloudDataset` for one split.

Loader signature: ``loader(split: str, *, root: str | None, task: str | None, num_points: int, seed: int)``.
Readers of on-disk formats need ``root``; the synthetic ``shapes`` and ``lidar_scenes`` sets ignore it.
A loader may be registered with a :class:`DatasetInfo` describing it (see :func:`pointserve.data.dataset_info`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pointserve.data.base import PointCloudDataset

Loader = Callable[..., PointCloudDataset]
DATASETS: dict[str, Loader] = {}


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset holds: a one-line description, its tasks (the first is the default), the names of its
    per-point channels, its label names (object classes, or the per-point classes of a segmentation set), its
    splits, and whether it is read from disk (``root``)."""

    description: str
    tasks: tuple[str, ...]
    channels: tuple[str, ...]
    class_names: tuple[str, ...]
    splits: tuple[str, ...] = ("train", "test")
    needs_root: bool = True

    @property
    def in_channels(self) -> int:
        return len(self.channels)


DATASET_INFO: dict[str, DatasetInfo] = {}


def register_dataset(name: str, *, info: DatasetInfo | None = None) -> Callable[[Loader], Loader]:
    def wrap(loader: Loader) -> Loader:
        DATASETS[name] = loader
        if info is not None:
            DATASET_INFO[name] = info
        return loader

    return wrap
