"""Where calibration clouds come from when the model card names no dataset (or another one is wanted).

A checkpoint imported from another project (``pointserve import-checkpoint``) carries no dataset in its
card, so the calibration set cannot be drawn "from the training split" by name. ``--calibration-data SPEC``
says where the clouds are instead; :func:`load_calibration_source` turns the spec into a
:class:`~pointserve.data.base.PointCloudDataset`:

* ``NAME:ROOT`` — the ``train`` split (never ``test``: the held-out split must stay unseen) of a registered
  dataset (:mod:`pointserve.data.registry`) read from the folder ``ROOT``; ``NAME:`` for one that needs no
  folder (``shapes``);
* ``DIR`` — a folder of point-cloud files (``.ply .pcd .npy .xyz .txt``), searched recursively, read with
  :func:`pointserve.data.formats.read_point_cloud` in the order of their relative paths (deterministic).
  A file's label is the index of its immediate parent folder's name in ``card.class_names``, else 0; for
  part segmentation (whose ``category`` graph input is that label) every file must sit in a folder named
  after a category. Hidden files and folders (names starting with ``.``) are skipped.

Shapes:
    every sample's points: (N_i, card.in_channels) float32; N_i may differ per file (the calibration set
    resamples each cloud to ``card.num_points``)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pointserve.card import ModelCard
from pointserve.data.base import PointCloudDataset, Sample
from pointserve.errors import CalibrationError, ConfigError, DataError

CLOUD_EXTENSIONS = (".ply", ".pcd", ".npy", ".xyz", ".txt")
TRAIN_SPLIT = "train"
SPEC_FORMS = (
    "DATASET:ROOT (a registered dataset's train split, e.g. modelnet40_h5:/data/modelnet40) or "
    f"DIR_OF_CLOUDS (a folder of {' '.join(CLOUD_EXTENSIONS)} files, searched recursively)"
)
# The --calibration-data help of `pointserve calibrate` and `pointserve build`: one text, so they cannot drift.
CALIBRATION_DATA_HELP = (
    "where to draw calibration clouds from when the model card names no dataset (an imported checkpoint) or "
    "another one is wanted: DATASET:ROOT, the train split of a registered dataset read from ROOT "
    "(e.g. modelnet40_h5:/data/modelnet40), or DIR_OF_CLOUDS, a folder searched recursively for "
    ".ply/.pcd/.npy/.xyz/.txt files (a file's label is its parent folder's name when that is one of the "
    "model's classes; part-segmentation models need every file in a folder named after its category)"
)
FOLDER_DATASET_NAME = "folder"  # the dataset name inside the content hash: the same clouds hash the same anywhere


@dataclass(frozen=True)
class CalibrationSource:
    """The clouds a calibration set is drawn from, and how the manifest records them.

    ``description`` is for people ("modelnet40_h5:/data/m40 (train split, 9843 clouds)", "folder /x (37
    files)"); ``sha256`` is the dataset's :meth:`~PointCloudDataset.content_hash` (points and labels).
    """

    dataset: PointCloudDataset
    description: str
    sha256: str

    @property
    def tag(self) -> str:
        """A short file-name-safe name of this source: the calibration set's file name starts with it."""
        return f"{self.dataset.name}-{self.sha256[:12]}"


def known_dataset_names() -> list[str]:
    """The registered dataset names, sorted."""
    from pointserve.data.catalog import dataset_names

    return dataset_names()


def load_calibration_source(spec: str, card: ModelCard) -> CalibrationSource:
    """Read the calibration clouds that ``spec`` names (``NAME:ROOT`` or a folder), checked against ``card``.

    An existing folder wins over the ``NAME:ROOT`` reading, so a folder whose path has a colon still works.
    Every problem is a :class:`CalibrationError` saying what was wrong and what forms ``spec`` may take.
    """
    if not spec or not spec.strip():
        raise CalibrationError(f"empty calibration data; pass {SPEC_FORMS}")
    path = Path(spec).expanduser()
    if path.is_dir():
        return _folder_source(path, card)
    name, colon, root = spec.partition(":")
    if colon and name and not any(sep in name for sep in ("/", "\\")):
        return _registered_source(name, root or None, card)
    if path.exists():
        raise CalibrationError(f"calibration data {spec}: is a file, not a folder; pass {SPEC_FORMS}")
    raise CalibrationError(f"calibration data {spec}: no such folder; pass {SPEC_FORMS}")


def _registered_source(name: str, root: str | None, card: ModelCard) -> CalibrationSource:
    from pointserve.data.catalog import load_dataset

    known = known_dataset_names()
    if name not in known:
        raise CalibrationError(
            f"calibration data {name}:{root or ''}: unknown dataset {name!r}; known datasets: {', '.join(known)} "
            f"(or pass a folder of {' '.join(CLOUD_EXTENSIONS)} files)"
        )
    try:
        dataset = load_dataset(name, TRAIN_SPLIT, root=root, task=card.task, num_points=card.num_points)
    except (ConfigError, DataError) as exc:
        raise CalibrationError(f"calibration data {name}:{root or ''}: {exc}") from None
    if len(dataset) == 0:
        raise CalibrationError(f"calibration data {name}:{root or ''}: the {TRAIN_SPLIT} split is empty")
    dataset = _categories_by_name(dataset, card)
    shown_root = str(Path(root).expanduser().resolve()) if root else ""
    description = f"{name}:{shown_root} ({TRAIN_SPLIT} split, {len(dataset)} clouds)"
    return CalibrationSource(dataset=dataset, description=description, sha256=dataset.content_hash())


def _categories_by_name(dataset: PointCloudDataset, card: ModelCard) -> PointCloudDataset:
    """Part segmentation feeds the label as the ``category`` input: renumber it into the card's categories."""
    if not card.needs_category or dataset.class_names == card.class_names:
        return dataset
    index = {name: i for i, name in enumerate(card.class_names)}
    mapping = {}
    for label in sorted({int(sample.label) for sample in dataset.samples}):
        category = dataset.class_names[label] if label < len(dataset.class_names) else str(label)
        if category not in index:
            raise CalibrationError(
                f"calibration data {dataset.name}: category {category!r} is not one of the model's "
                f"({', '.join(card.class_names)})"
            )
        mapping[label] = index[category]
    samples = [replace(sample, label=mapping[int(sample.label)]) for sample in dataset.samples]
    return replace(dataset, samples=samples, class_names=list(card.class_names))


def find_cloud_files(folder: Path) -> list[Path]:
    """Every cloud file under ``folder`` (recursively, hidden entries skipped), sorted by relative path."""
    found = []
    for directory, subdirs, files in os.walk(folder):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]  # .git, .ipynb_checkpoints: not data
        for file in files:
            if not file.startswith(".") and Path(file).suffix.lower() in CLOUD_EXTENSIONS:
                found.append(Path(directory) / file)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _folder_source(folder: Path, card: ModelCard) -> CalibrationSource:
    folder = folder.resolve()
    files = find_cloud_files(folder)
    if not files:
        raise CalibrationError(
            f"calibration data {folder}: no point-cloud files ({' '.join(CLOUD_EXTENSIONS)}) in it or below it"
        )
    index = {name: i for i, name in enumerate(card.class_names)}
    samples = []
    for path in files:
        label = index.get(path.parent.name)
        if label is None and card.needs_category:
            raise CalibrationError(
                f"calibration data {folder}: {path}: a part-segmentation model needs each cloud in a folder named "
                f"after its category ({', '.join(card.class_names)}); {path.parent.name!r} is not one"
            )
        samples.append(Sample(points=_read_cloud(path, card.in_channels), label=label or 0))
    dataset = PointCloudDataset(
        name=FOLDER_DATASET_NAME,
        split=TRAIN_SPLIT,
        task=card.task,
        samples=samples,
        class_names=list(card.class_names),
        part_names=list(card.part_names),
        category_parts=dict(card.category_parts),
    )
    description = f"folder {folder} ({len(files)} files)"
    return CalibrationSource(dataset=dataset, description=description, sha256=dataset.content_hash())


def _read_cloud(path: Path, channels: int) -> np.ndarray:
    """One file's points, or a CalibrationError naming the file.

    Shapes:
        returns (N, channels) float32 with N >= 1, every value finite
    """
    from pointserve.data.formats import read_point_cloud

    try:
        points = read_point_cloud(path, channels=channels)
    except DataError as exc:
        message = str(exc)
        raise CalibrationError(message if str(path) in message else f"{path}: {message}") from None
    if len(points) == 0:
        raise CalibrationError(f"{path}: has no points")
    if not np.isfinite(points).all():
        # One NaN or inf would set an activation range to nan/inf and ruin every scale downstream of it.
        raise CalibrationError(f"{path}: has non-finite (nan or inf) values")
    return points


__all__ = [
    "CALIBRATION_DATA_HELP",
    "CLOUD_EXTENSIONS",
    "CalibrationSource",
    "find_cloud_files",
    "known_dataset_names",
    "load_calibration_source",
]
