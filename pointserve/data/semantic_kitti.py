"""The ``semantic_kitti`` dataset: a SemanticKITTI folder on disk, read one scan at a time.

Layout (the dataset's own): ``ROOT/sequences/XX/velodyne/NNNNNN.bin`` (KITTI velodyne scans) and
``ROOT/sequences/XX/labels/NNNNNN.label`` (or the same under ``ROOT/dataset/``). Labels are mapped to train ids
with SemanticKITTI's learning map (:mod:`pointserve.data.lidar_formats`): 0 = unlabeled, then the 19 classes.

Shapes:
    points: (N, 4) float32 x, y, z, intensity (N varies per scan unless ``num_points``); seg: (N,) int64
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from pointserve.data.base import LazySamples, PointCloudDataset, Sample
from pointserve.data.lidar_formats import KITTI_CHANNELS, SEMANTIC_KITTI_CLASSES, read_semantic_kitti_scan
from pointserve.data.readers import Root, check_split, check_task, dataset_dir, resample_cloud, sample_rng
from pointserve.data.registry import DatasetInfo, register_dataset
from pointserve.errors import DataError

# the benchmark's sequences: train and valid as in semantic-kitti.yaml; its test sequences (11-21) have no labels
SEMANTIC_KITTI_SPLITS = {"train": (0, 1, 2, 3, 4, 5, 6, 7, 9, 10), "val": (8,), "test": (8,)}

SEMANTIC_KITTI_INFO = DatasetInfo(
    description="SemanticKITTI from disk: sequences/XX/velodyne/*.bin + labels/*.label, 19 classes + unlabeled",
    tasks=("semantic_segmentation",),
    channels=KITTI_CHANNELS,
    class_names=tuple(SEMANTIC_KITTI_CLASSES),
    splits=tuple(SEMANTIC_KITTI_SPLITS),
)


def semantic_kitti_files(root: Root, sequences: Sequence[int]) -> list[tuple[Path, Path]]:
    """The ``(velodyne .bin, .label)`` pairs of ``sequences`` under ``root`` (or ``root/dataset``), sorted."""
    base = dataset_dir(root, "dataset", "sequences", "semantic_kitti") / "sequences"
    pairs: list[tuple[Path, Path]] = []
    for number in sequences:
        folder = base / f"{int(number):02d}"
        if not folder.is_dir():
            continue
        for scan in sorted((folder / "velodyne").glob("*.bin")):
            label = folder / "labels" / f"{scan.stem}.label"
            if not label.is_file():
                raise DataError(f"{label}: missing (the labels of {scan})")
            pairs.append((scan, label))
    if not pairs:
        listed = " ".join(f"{int(n):02d}" for n in sequences)
        raise DataError(f"{base}: no scans in sequences {listed} (expected XX/velodyne/*.bin and XX/labels/*.label)")
    return pairs


def _kitti_sample(pairs: list[tuple[Path, Path]], num_points: int | None, seed: int, index: int) -> Sample:
    points, labels = read_semantic_kitti_scan(*pairs[index])
    points, labels = resample_cloud(points, labels, num_points, sample_rng(seed, index))
    return Sample(points=points, label=0, seg=labels)


@register_dataset("semantic_kitti", info=SEMANTIC_KITTI_INFO)
def load_semantic_kitti(
    split: str,
    *,
    root: Root = None,
    task: str | None = None,
    num_points: int | None = None,
    seed: int = 0,
    sequences: Sequence[int] | None = None,
    **_: object,
) -> PointCloudDataset:
    """SemanticKITTI's ``train`` (sequences 00-07, 09, 10) or ``val`` split (08); ``test`` is 08 too, since
    the benchmark's test sequences (11-21) have no labels. ``sequences`` picks others; sequences not on disk are
    skipped. Scans are read on access (not kept) and stay whole unless ``num_points`` is given; labels are
    train ids (0 = unlabeled)."""
    check_split(split, tuple(SEMANTIC_KITTI_SPLITS), "semantic_kitti")
    task = check_task(task, SEMANTIC_KITTI_INFO.tasks, "semantic_kitti")
    pairs = semantic_kitti_files(root, sequences if sequences is not None else SEMANTIC_KITTI_SPLITS[split])
    return PointCloudDataset(
        name="semantic_kitti",
        split=split,
        task=task,  # type: ignore[arg-type]
        samples=LazySamples(len(pairs), partial(_kitti_sample, pairs, num_points, seed), keep=False),
        class_names=["scene"],
        part_names=list(SEMANTIC_KITTI_CLASSES),
    )


__all__ = ["SEMANTIC_KITTI_INFO", "SEMANTIC_KITTI_SPLITS", "load_semantic_kitti", "semantic_kitti_files"]
