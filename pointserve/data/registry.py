"""Datasets by name. Each loader returns a :class:`PointCloudDataset` for one split.

Loader signature: ``loader(split: str, *, root: str | None, task: str | None, num_points: int, seed: int)``.
Readers of on-disk formats need ``root``; the synthetic ``shapes`` set ignores it.
"""

from __future__ import annotations

from collections.abc import Callable

from pointserve.data.base import PointCloudDataset

Loader = Callable[..., PointCloudDataset]
DATASETS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    def wrap(loader: Loader) -> Loader:
        DATASETS[name] = loader
        return loader

    return wrap
