"""Readers for the standard on-disk datasets, by path (numpy, h5py; no torch).

Registered names (see :mod:`pointserve.data.registry`):

- ``modelnet40_h5``: ``modelnet40_ply_hdf5_2048/`` (PointNet's HDF5 files)
- ``modelnet40_normal`` / ``modelnet10_normal``: ``modelnet40_normal_resampled/`` (PointNet++'s .txt files)
- ``modelnet_off``: the ModelNet10/40 ``.off`` meshes, sampled on their surface
- ``shapenet_part``: ``shapenetcore_partanno_segmentation_benchmark_v0/`` (.pts/.seg + JSON splits)
- ``shapenet_part_h5``: the ``hdf5_data/`` variant of ShapeNet part
- ``semantic_kitti``: ``sequences/XX/velodyne/*.bin`` + ``labels/*.label`` (:mod:`pointserve.data.semantic_kitti`)

Every loader has the signature ``loader(split, *, root=None, task=None, num_points=1024, seed=0, **options)``;
``root`` is the dataset's folder or the folder that holds it. ``num_points=None`` keeps clouds as stored.
This module holds what the readers share; the format modules import it and register their loaders.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from pointserve.data.transforms import resample_indices
from pointserve.errors import ConfigError, DataError

# A dataset root folder argument, as every on-disk loader takes it.
Root = str | os.PathLike | None


def dataset_dir(root: Root, folder: str, marker: str, dataset: str) -> Path:
    """The dataset folder: ``root`` itself or ``root/folder``, whichever holds the file ``marker``."""
    if root is None:
        raise ConfigError(f"dataset {dataset!r} is read from disk: give its folder ({folder}/) as the data root")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"{base}: no such directory (data root of dataset {dataset!r})")
    for candidate in (base, base / folder):
        if (candidate / marker).exists():
            return candidate
    raise DataError(f"{base / folder / marker}: missing (dataset {dataset!r} expects {folder}/{marker} in its root)")


def check_split(split: str, allowed: Sequence[str], dataset: str) -> str:
    if split not in allowed:
        raise ConfigError(f"dataset {dataset!r} has no split {split!r}; choose one of {', '.join(allowed)}")
    return split


def check_task(task: str | None, allowed: Sequence[str], dataset: str) -> str:
    """The task to load: ``task`` if the dataset supports it, else an error; ``None`` means the first allowed."""
    if task is None:
        return allowed[0]
    if task not in allowed:
        raise ConfigError(f"dataset {dataset!r} does not support task {task!r}; it supports {', '.join(allowed)}")
    return task


def read_lines(path: Path) -> list[str]:
    """The non-blank lines of a text file, stripped; a DataError naming the file if it is missing or not text."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def list_file_paths(list_file: Path, folder: Path) -> list[Path]:
    """Resolve the entries of a file list (``data/modelnet40_ply_hdf5_2048/ply_data_train0.h5``) by basename."""
    paths = []
    for number, entry in enumerate(read_lines(list_file), start=1):
        path = folder / Path(entry.replace("\\", "/")).name
        if not path.is_file():
            raise DataError(f"{path}: file not found (listed on line {number} of {list_file})")
        paths.append(path)
    return paths


def read_hdf5(path: Path, keys: Sequence[str], optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Read whole datasets ``keys`` (required) and ``optional`` from an HDF5 file into numpy arrays."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with h5py.File(path, "r") as h5:
            out = {}
            for key in [*keys, *optional]:
                if key not in h5:
                    if key in optional:
                        continue
                    raise DataError(f"{path}: missing key {key!r} (keys: {', '.join(sorted(h5.keys())) or 'none'})")
                if not isinstance(h5[key], h5py.Dataset):
                    raise DataError(f"{path}: {key!r} is a group, expected an array")
                out[key] = h5[key][()]
            return out
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})") from None


def check_array(array: np.ndarray, path: Path, key: str, shape: Sequence[int | None], kinds: str) -> np.ndarray:
    """Check an array's rank, the sizes given in ``shape`` (None = any) and its dtype kind ("f", "iu", ...)."""
    expected = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
    if array.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, array.shape, strict=True)):
        raise DataError(f"{path}: {key!r} has shape {array.shape}, expected {expected}")
    if array.dtype.kind not in kinds:
        raise DataError(f"{path}: {key!r} has dtype {array.dtype}, expected {'float' if kinds == 'f' else 'integer'}")
    return array


def check_labels(labels: np.ndarray, count: int, where: str, what: str = "label") -> None:
    """Every label must be in [0, count); the message names the first offender and where it is."""
    bad = np.flatnonzero((labels < 0) | (labels >= count))
    if len(bad):
        raise DataError(f"{where}: {what} {int(labels[bad[0]])} at index {int(bad[0])} out of range 0..{count - 1}")


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """One generator per sample, so a sample's resampling does not depend on which others were loaded."""
    return np.random.default_rng([seed, index])


def resample_cloud(
    points: np.ndarray, seg: np.ndarray | None, num_points: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Pick ``num_points`` points (a random subset, or all plus repeats); per-point labels stay aligned.

    Shapes:
        points (N, C) -> (num_points, C) float32; seg (N,) -> (num_points,) int64
    """
    if num_points is None or len(points) == num_points:
        index = slice(None)
    elif len(points) == 0:
        raise DataError("cannot resample an empty cloud")
    else:
        index = resample_indices(len(points), num_points, rng)
    out = np.ascontiguousarray(points[index], dtype=np.float32)
    return out, (None if seg is None else np.ascontiguousarray(seg[index], dtype=np.int64))


def resample_batch_indices(batch: int, stored: int, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """Per-cloud point indices for a batch of equal-size clouds (vectorised: one random key per point).

    Shapes:
        returns (batch, num_points) int64, sorted per row (point order is kept)
    """
    if num_points >= stored:
        return np.stack([resample_indices(stored, num_points, rng) for _ in range(batch)]).astype(np.int64)
    keys = rng.random((batch, stored))
    return np.sort(np.argpartition(keys, num_points - 1, axis=1)[:, :num_points], axis=1)
