"""Calibration sets: clouds drawn from a model's training split, prepared exactly as training prepares them.

Each cloud goes through the steps of ``pointserve.training.loop`` for a training batch — resample to the
card's ``num_points``, the training augmentation (:func:`pointserve.data.transforms.augment`), then the
card's normalisation — so the activation ranges the int8 scales are computed from are those the network
saw while it learned. The set is an ``.npz`` (plain numeric arrays, no pickle) written deterministically
(fixed zip timestamps), so the same card, split, size and seed give the same bytes and the same sha256
anywhere; that hash is what the manifest records and what the scale cache is keyed on.

Shapes (in the .npz):
    points:       (S, N, C) float32   the calibration clouds
    label:        (S,) int64          object class / category of each cloud
    category:     (S,) int64          part segmentation only: the ``category`` graph input
    source_index: (S,) int64          index of each cloud in the split it was drawn from
    meta_json:    () unicode          a JSON object: dataset, split, seed, num_points, normalisation, ...
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pointserve.card import ModelCard
from pointserve.data.base import PointCloudDataset
from pointserve.data.transforms import augment, normalize, resample_indices
from pointserve.errors import CalibrationError
from pointserve.repository.manifest import CalibrationInfo

CALIBRATION_FORMAT = 1
DEFAULT_NUM_SAMPLES = 256
TRANSFORMS = "resample -> augment(rotate_up, scale, jitter, shuffle, dropout) -> normalize"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest zip timestamp: fixed, so equal arrays give equal bytes


@dataclass(frozen=True)
class CalibrationSet:
    """A calibration ``.npz`` on disk and what it holds."""

    path: Path
    sha256: str
    num_samples: int
    seed: int
    num_points: int
    dataset: str
    split: str
    has_category: bool
    source_data_hash: str | None = None  # content hash of the split the clouds were drawn from

    @classmethod
    def load(cls, path: str | Path) -> CalibrationSet:
        """Open a calibration set (checking its arrays); a malformed file raises CalibrationError naming it."""
        from pointserve.repository.store import sha256_file

        path = Path(path)
        arrays = read_npz(path)
        meta = _meta(arrays, path)
        return cls(
            path=path,
            sha256=sha256_file(path),
            num_samples=int(arrays["points"].shape[0]),
            seed=int(meta["seed"]),
            num_points=int(arrays["points"].shape[1]),
            dataset=str(meta.get("dataset", "")),
            split=str(meta.get("split", "")),
            has_category="category" in arrays,
            source_data_hash=meta.get("source_data_hash"),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return read_npz(self.path)

    def info(self, method: str, version_dir: str | Path | None = None) -> CalibrationInfo:
        """The manifest's record of this set, with ``file`` relative to the version folder when given."""
        file = self.path
        if version_dir is not None:
            try:
                file = self.path.resolve().relative_to(Path(version_dir).resolve())
            except ValueError:
                file = self.path
        return CalibrationInfo(
            method=method,  # type: ignore[arg-type]
            num_samples=self.num_samples,
            seed=self.seed,
            data_hash=self.sha256,
            file=file.as_posix(),
        )


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of a calibration ``.npz``, loaded without pickle and shape-checked."""
    if not path.is_file():
        raise CalibrationError(f"{path}: calibration set not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CalibrationError(f"{path}: not a readable calibration .npz ({exc})") from None
    points = arrays.get("points")
    if points is None or points.ndim != 3 or points.dtype != np.float32 or points.shape[0] == 0:
        raise CalibrationError(f"{path}: needs a non-empty float32 'points' array of shape (S, N, C)")
    if "category" in arrays and arrays["category"].shape != (points.shape[0],):
        raise CalibrationError(f"{path}: 'category' must have shape ({points.shape[0]},)")
    _meta(arrays, path)
    return arrays


def _meta(arrays: dict[str, np.ndarray], path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(str(arrays["meta_json"]))
    except (KeyError, json.JSONDecodeError):
        raise CalibrationError(f"{path}: missing or invalid 'meta_json'") from None
    if not isinstance(meta, dict) or "seed" not in meta:
        raise CalibrationError(f"{path}: 'meta_json' lacks the seed")
    return meta


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The ``.npz`` that ``np.savez`` writes (stored zip of ``.npy`` members), with fixed timestamps."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            with archive.open(info, mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(arrays[key]), allow_pickle=False)
    return buffer.getvalue()


def prepare_cloud(
    points: np.ndarray, card: ModelCard, rng: np.random.Generator, *, seg: np.ndarray | None = None
) -> np.ndarray:
    """One training-style cloud: resample to ``card.num_points``, augment, normalise (training/loop.py order)."""
    index = resample_indices(len(points), card.num_points, rng)
    cloud, _ = augment(points[index], rng, seg[index] if seg is not None else None)
    return normalize(cloud, card.normalization).astype(np.float32)


def load_training_split(card: ModelCard, *, root: str | None = None, split: str = "train") -> PointCloudDataset:
    """The split the model was trained on, by the dataset name in its card."""
    from pointserve.data import load_dataset

    if not card.dataset:
        raise CalibrationError("the model card names no dataset; pass the training split as `dataset`")
    return load_dataset(card.dataset, split, root=root, task=card.task, num_points=card.num_points)


def calibration_file_name(
    card: ModelCard, num_samples: int, seed: int, split: str = "train", source_tag: str | None = None
) -> str:
    """``<dataset>-<split>-n<S>-s<seed>.npz``; with ``source_tag`` (data not named by the card) the tag leads."""
    name = card.dataset or "data"
    if source_tag:
        # One file per source, so a set drawn from one folder is never overwritten by (or reused for) another.
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", source_tag)
    return f"{name}-{split}-n{num_samples}-s{seed}.npz"


def build_calibration_set(
    card: ModelCard,
    out_dir: str | Path,
    *,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    seed: int = 0,
    dataset: PointCloudDataset | None = None,
    dataset_root: str | None = None,
    progress: bool = False,
    source_tag: str | None = None,
) -> CalibrationSet:
    """Draw ``num_samples`` training clouds (without replacement while the split lasts), prepare and save them.

    ``dataset`` is the training split if already loaded; otherwise it is loaded by ``card.dataset``
    (``dataset_root`` for datasets read from disk). An existing set with the same name and the same recipe
    (and, when ``dataset`` is given, the same data) is reused as it is: same bytes, same hash, so the scale
    cache hits. ``source_tag`` names data the card does not (``--calibration-data``): it goes into the file name
    and the recipe. Returns the :class:`CalibrationSet`.
    """
    from pointserve.repository.store import atomic_write_bytes

    if num_samples < 1:
        raise CalibrationError(f"num_samples must be at least 1, not {num_samples}")
    path = Path(out_dir) / calibration_file_name(card, num_samples, seed, source_tag=source_tag)
    recipe = {
        "format": CALIBRATION_FORMAT,
        "dataset": card.dataset,
        "split": "train",
        "task": card.task,
        "seed": seed,
        "num_samples": num_samples,
        "num_points": card.num_points,
        "in_channels": card.in_channels,
        "normalization": card.normalization,
        "transforms": TRANSFORMS,
    }
    if source_tag:
        recipe["source"] = source_tag  # only when given: sets drawn by the card's dataset keep their exact bytes
    if dataset is not None:
        # Given data: its content is part of the recipe. Loaded by name: the name stands for it (fast reuse).
        recipe["source_data_hash"] = dataset.content_hash()
    if path.is_file():
        try:
            existing = CalibrationSet.load(path)
            meta = _meta(existing.arrays(), path)
            if {k: meta.get(k) for k in recipe} == recipe:
                return existing
        except CalibrationError:
            pass  # unreadable or another recipe: rebuild it
    if dataset is None:
        dataset = load_training_split(card, root=dataset_root)
    if len(dataset) == 0:
        raise CalibrationError(f"the {dataset.name} training split is empty")
    if dataset.in_channels != card.in_channels:
        raise CalibrationError(
            f"dataset clouds have {dataset.in_channels} channels, the model expects {card.in_channels}"
        )
    rng = np.random.default_rng(seed)
    # Without replacement while the split lasts, so a small set covers as many different clouds as it can.
    order = np.concatenate([rng.permutation(len(dataset)) for _ in range(-(-num_samples // len(dataset)))])
    chosen = order[:num_samples].astype(np.int64)
    clouds = []
    for index in _track(chosen, progress, "drawing calibration clouds"):
        sample = dataset[int(index)]
        clouds.append(prepare_cloud(sample.points, card, rng, seg=sample.seg))
    labels = np.array([dataset[int(i)].label for i in chosen], dtype=np.int64)
    arrays: dict[str, np.ndarray] = {"points": np.stack(clouds), "label": labels, "source_index": chosen}
    if card.needs_category:
        arrays["category"] = labels.copy()
    meta = recipe | {"source_data_hash": recipe.get("source_data_hash") or dataset.content_hash()}
    meta["card_data_hash"] = card.data_hash  # equal to source_data_hash when drawn from the very training data
    arrays["meta_json"] = np.array(json.dumps(meta, sort_keys=True))
    atomic_write_bytes(path, npz_bytes(arrays))
    return CalibrationSet.load(path)


def _track(items, enabled: bool, description: str):
    if not enabled:
        return items
    from rich.progress import track

    return track(items, description=description, transient=True)


__all__ = [
    "DEFAULT_NUM_SAMPLES",
    "CalibrationSet",
    "build_calibration_set",
    "calibration_file_name",
    "npz_bytes",
    "prepare_cloud",
    "read_npz",
]
