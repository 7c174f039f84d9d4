"""The dataset contract shared by every reader: numpy in, numpy out, no torch.

Shapes:
    points: (N, C) float32, xyz first, then any extra per-point channels (normals, colour)
    seg:    (N,) int64 per-point labels (segmentation datasets), else None
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

DatasetTask = Literal["classification", "part_segmentation", "semantic_segmentation"]


@dataclass(frozen=True)
class Sample:
    """One point cloud with its labels.

    ``label`` is the object class (classification) or the object category (part segmentation).
    """

    points: np.ndarray
    label: int
    seg: np.ndarray | None = None


@dataclass
class PointCloudDataset:
    """An in-memory split of a dataset: a list of samples and the names of their labels.

    ``category_parts`` maps each category name to the global part ids it may contain (part segmentation).
    """

    name: str
    split: str
    task: DatasetTask
    samples: Sequence[Sample]
    class_names: list[str]
    part_names: list[str] = field(default_factory=list)
    category_parts: dict[str, list[int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    @property
    def in_channels(self) -> int:
        return int(self.samples[0].points.shape[1]) if len(self.samples) else 3

    def content_hash(self) -> str:
        """A sha256 over every sample's points and labels: identifies exactly the data a model saw."""
        digest = hashlib.sha256()
        digest.update(f"{self.name}/{self.split}/{self.task}".encode())
        for sample in self.samples:
            digest.update(np.ascontiguousarray(sample.points, dtype=np.float32).tobytes())
            digest.update(int(sample.label).to_bytes(4, "little", signed=True))
            if sample.seg is not None:
                digest.update(np.ascontiguousarray(sample.seg, dtype=np.int64).tobytes())
        return digest.hexdigest()


class LazySamples(Sequence[Sample]):
    """Samples made on first access by ``load(index)`` (generated scans, files read from disk), kept when
    ``keep`` (a split that fits in memory) or made again on every access (a large on-disk set)."""

    def __init__(self, count: int, load: Callable[[int], Sample], *, keep: bool = True):
        self._count, self._load, self._keep = count, load, keep
        self._kept: dict[int, Sample] = {}

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        index = int(index)
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(f"sample {index} out of range (the split has {self._count})")
        if index in self._kept:
            return self._kept[index]
        sample = self._load(index)
        if self._keep:
            self._kept[index] = sample
        return sample
