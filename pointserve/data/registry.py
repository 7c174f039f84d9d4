"""Datasets by name. Each loader returns a :class:`PointCloudDataset` for one split.

Loader signature: ``loader(split: str, *, root: str | None, task: str | None, num_points: int, seed: int)``.
Readers of on-disk formats need ``root``; the synthetic ``shapes`` set ignores it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pointserve.data.base import PointCloudDataset
from pointserve.errors import ConfigError

Loader = Callable[..., PointCloudDataset]
DATASETS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    def wrap(loader: Loader) -> Loader:
        DATASETS[name] = loader
        return loader

    return wrap


def _ensure_builtin() -> None:
    # Importing the modules registers their loaders; kept lazy so `import pointserve.data` stays cheap.
    from pointserve.data import readers, shapes  # noqa: F401


def load_dataset(name: str, split: str, **options: Any) -> PointCloudDataset:
    """Load split ``split`` ("train" or "test") of dataset ``name``."""
    _ensure_builtin()
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](split, **options)
