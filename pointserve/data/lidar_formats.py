"""LiDAR files: KITTI velodyne ``.bin``, SemanticKITTI ``.label`` (with its learning map) and nuScenes ``.pcd.bin``.

- KITTI ``velodyne/*.bin``: float32 little-endian, N x 4 (x, y, z, intensity), no header.
- nuScenes ``LIDAR_TOP/*.pcd.bin``: float32 little-endian, N x 5 (x, y, z, intensity, ring index 0..31).
- SemanticKITTI ``labels/*.label``: uint32 little-endian, one per point of the ``.bin`` of the same name; the
  semantic id (the raw SemanticKITTI id: 10 car, 40 road, 252 moving-car, ...) in the low 16 bits, the
  instance id in the high 16 bits. :data:`SEMANTIC_KITTI_LEARNING_MAP` (``learning_map`` of the dataset's
  ``semantic-kitti.yaml``) maps raw ids to the 19 train classes 1..19 and 0 = unlabelled
  (:data:`SEMANTIC_KITTI_CLASSES`); :func:`apply_learning_map` applies it.

The ``.bin`` readers are reachable from :func:`pointserve.data.formats.read_point_cloud` as formats ``bin``
and ``pcd.bin`` (by extension), with named channels, so ``channels=3`` gives xyz and ``channels=4`` xyz +
intensity. Files are untrusted: a size that is not whole points, an empty file, NaN/inf values, a ring column
that holds no ring indices, or a label count that differs from the point count raise :class:`DataError`
naming the file and the problem.

The dataset ``semantic_kitti`` (:mod:`pointserve.data.semantic_kitti`) reads a SemanticKITTI folder with these.

Shapes:
    KITTI points (N, 4) float32; nuScenes points (N, 5) float32; semantic, instance (N,) int64
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pointserve.data.text import Columns, read_file_bytes
from pointserve.errors import DataError

KITTI_CHANNELS = ("x", "y", "z", "intensity")
NUSCENES_CHANNELS = ("x", "y", "z", "intensity", "ring")

# semantic-kitti.yaml (github.com/PRBonn/semantic-kitti-api, config/semantic-kitti.yaml): ``labels`` and
# ``learning_map``. Raw ids missing from the map (none in the released labels) map to 0, as in the API.
SEMANTIC_KITTI_LABELS = {
    0: "unlabeled", 1: "outlier", 10: "car", 11: "bicycle", 13: "bus", 15: "motorcycle", 16: "on-rails",
    18: "truck", 20: "other-vehicle", 30: "person", 31: "bicyclist", 32: "motorcyclist", 40: "road",
    44: "parking", 48: "sidewalk", 49: "other-ground", 50: "building", 51: "fence", 52: "other-structure",
    60: "lane-marking", 70: "vegetation", 71: "trunk", 72: "terrain", 80: "pole", 81: "traffic-sign",
    99: "other-object", 252: "moving-car", 253: "moving-bicyclist", 254: "moving-person",
    255: "moving-motorcyclist", 256: "moving-on-rails", 257: "moving-bus", 258: "moving-truck",
    259: "moving-other-vehicle",
}  # fmt: skip
SEMANTIC_KITTI_LEARNING_MAP = {
    0: 0, 1: 0, 10: 1, 11: 2, 13: 5, 15: 3, 16: 5, 18: 4, 20: 5, 30: 6, 31: 7, 32: 8, 40: 9, 44: 10, 48: 11,
    49: 12, 50: 13, 51: 14, 52: 0, 60: 9, 70: 15, 71: 16, 72: 17, 80: 18, 81: 19, 99: 0, 252: 1, 253: 7, 254: 6,
    255: 8, 256: 5, 257: 5, 258: 4, 259: 5,
}  # fmt: skip
# train id -> name: 0 = unlabelled (ignored in evaluation), then the 19 classes of the benchmark
SEMANTIC_KITTI_CLASSES = [
    "unlabeled", "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist", "motorcyclist",
    "road", "parking", "sidewalk", "other-ground", "building", "fence", "vegetation", "trunk", "terrain", "pole",
    "traffic-sign",
]  # fmt: skip


# ------------------------------------------------------------------------------------------------------- reading


def _bytes_of(source: str | os.PathLike | bytes, filename: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), filename or "<upload>"
    return read_file_bytes(source), filename or str(source)


def _float_rows(data: bytes, name: str, columns: Sequence[str], what: str) -> np.ndarray:
    row = 4 * len(columns)
    if not data:
        raise DataError(f"{name}: empty file, expected {what} points (float32 {' '.join(columns)})")
    if len(data) % row:
        raise DataError(
            f"{name}: {len(data)} bytes is not a whole number of {what} points ({row} bytes each: float32 "
            f"{' '.join(columns)}); {len(data) % row} bytes left over"
        )
    table = np.frombuffer(data, dtype="<f4").reshape(-1, len(columns))
    finite = np.isfinite(table)
    if not finite.all():
        point, column = (int(i) for i in np.argwhere(~finite)[0])
        raise DataError(f"{name}: point {point} has {table[point, column]} in {columns[column]} (NaN/inf)")
    return table.astype(np.float32)


def read_kitti_columns(data: bytes, name: str) -> Columns:
    """A KITTI velodyne ``.bin`` as named columns x y z intensity (the reader of format ``bin``)."""
    table = _float_rows(data, name, KITTI_CHANNELS, "KITTI velodyne")
    return {key: table[:, i] for i, key in enumerate(KITTI_CHANNELS)}


def read_nuscenes_columns(data: bytes, name: str) -> Columns:
    """A nuScenes ``.pcd.bin`` as named columns x y z intensity ring (the reader of format ``pcd.bin``)."""
    table = _float_rows(data, name, NUSCENES_CHANNELS, "nuScenes lidar")
    ring = table[:, 4]
    bad = np.flatnonzero((ring != np.round(ring)) | (ring < 0) | (ring > 255))
    if len(bad):
        raise DataError(
            f"{name}: point {int(bad[0])} has ring index {ring[bad[0]]}, not a whole number 0..255: not a nuScenes "
            f"5-column file (a 4-column KITTI .bin?)"
        )
    return {key: table[:, i] for i, key in enumerate(NUSCENES_CHANNELS)}


def read_kitti_bin(source: str | os.PathLike | bytes, *, filename: str | None = None) -> np.ndarray:
    """A KITTI velodyne ``.bin`` (path or bytes): ``(N, 4)`` float32 x, y, z, intensity."""
    data, name = _bytes_of(source, filename)
    return _float_rows(data, name, KITTI_CHANNELS, "KITTI velodyne")


def read_nuscenes_bin(source: str | os.PathLike | bytes, *, filename: str | None = None) -> np.ndarray:
    """A nuScenes ``.pcd.bin`` (path or bytes): ``(N, 5)`` float32 x, y, z, intensity, ring index."""
    data, name = _bytes_of(source, filename)
    columns = read_nuscenes_columns(data, name)
    return np.stack([columns[key] for key in NUSCENES_CHANNELS], axis=1)


def read_semantic_kitti_label(
    source: str | os.PathLike | bytes, *, num_points: int | None = None, filename: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A SemanticKITTI ``.label``: ``(semantic, instance)``, each ``(N,)`` int64 (the low and high 16 bits).

    ``num_points``: the point count of the scan it labels; a different count is an error.
    """
    data, name = _bytes_of(source, filename)
    if not data:
        raise DataError(f"{name}: empty label file, expected one uint32 per point")
    if len(data) % 4:
        raise DataError(f"{name}: {len(data)} bytes is not a whole number of uint32 labels (4 bytes each)")
    raw = np.frombuffer(data, dtype="<u4")
    if num_points is not None and len(raw) != num_points:
        raise DataError(f"{name}: {len(raw)} labels for a scan of {num_points} points")
    return (raw & 0xFFFF).astype(np.int64), (raw >> 16).astype(np.int64)


def apply_learning_map(semantic: np.ndarray, learning_map: Mapping[int, int] | None = None) -> np.ndarray:
    """Raw SemanticKITTI semantic ids -> train ids (default :data:`SEMANTIC_KITTI_LEARNING_MAP`; ids it lacks -> 0).

    Shapes:
        semantic (N,) integer -> (N,) int64
    """
    table = SEMANTIC_KITTI_LEARNING_MAP if learning_map is None else learning_map
    semantic = np.asarray(semantic)
    if semantic.dtype.kind not in "iu":
        raise DataError(f"semantic ids must be integers, got {semantic.dtype}")
    if len(semantic) and (semantic.min() < 0 or semantic.max() > 0xFFFF):
        raise DataError(f"semantic ids must be in 0..65535 (16 bits), got {semantic.min()}..{semantic.max()}")
    lut = np.zeros(0x10000, dtype=np.int64)
    for raw, train in table.items():
        lut[int(raw)] = int(train)
    return lut[semantic.astype(np.int64)]


def read_semantic_kitti_scan(
    bin_path: str | os.PathLike, label_path: str | os.PathLike | None = None, *, learning_map: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """A scan and its labels: ``points (N, 4)`` and ``labels (N,)`` (train ids, or raw ids without
    ``learning_map``), None without a label file."""
    points = read_kitti_bin(bin_path)
    if label_path is None:
        return points, None
    semantic, _ = read_semantic_kitti_label(label_path, num_points=len(points))
    return points, apply_learning_map(semantic) if learning_map else semantic


# ------------------------------------------------------------------------------------------------------- writing


def _float_table(points: np.ndarray, columns: int, what: str) -> np.ndarray:
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != columns or points.dtype.kind not in "fiu":
        raise DataError(f"{what} points must be a numeric (N, {columns}) array, got {points.dtype} {points.shape}")
    return np.ascontiguousarray(points, dtype="<f4")


def kitti_bin_bytes(points: np.ndarray) -> bytes:
    """``(N, 4)`` x, y, z, intensity -> the bytes of a KITTI velodyne ``.bin``."""
    return _float_table(points, 4, "KITTI velodyne").tobytes()


def nuscenes_bin_bytes(points: np.ndarray) -> bytes:
    """``(N, 5)`` x, y, z, intensity, ring -> the bytes of a nuScenes ``.pcd.bin``."""
    return _float_table(points, 5, "nuScenes lidar").tobytes()


def semantic_kitti_label_bytes(semantic: np.ndarray, instance: np.ndarray | None = None) -> bytes:
    """Raw semantic ids (and instance ids, default 0), each ``(N,)`` in 0..65535 -> a ``.label`` file's bytes."""
    semantic = np.asarray(semantic)
    instance = np.zeros_like(semantic) if instance is None else np.asarray(instance)
    for key, values in (("semantic", semantic), ("instance", instance)):
        if values.ndim != 1 or values.dtype.kind not in "iu":
            raise DataError(f"{key} ids must be a 1-D integer array, got {values.dtype} {values.shape}")
        if len(values) and (values.min() < 0 or values.max() > 0xFFFF):
            raise DataError(f"{key} ids must be in 0..65535 (16 bits), got {values.min()}..{values.max()}")
    if len(semantic) != len(instance):
        raise DataError(f"{len(semantic)} semantic ids but {len(instance)} instance ids")
    packed = semantic.astype(np.uint32) | (instance.astype(np.uint32) << 16)
    return packed.astype("<u4").tobytes()


def write_kitti_bin(path: str | os.PathLike, points: np.ndarray) -> Path:
    path = Path(path)
    path.write_bytes(kitti_bin_bytes(points))
    return path


def write_nuscenes_bin(path: str | os.PathLike, points: np.ndarray) -> Path:
    path = Path(path)
    path.write_bytes(nuscenes_bin_bytes(points))
    return path


def write_semantic_kitti_label(
    path: str | os.PathLike, semantic: np.ndarray, instance: np.ndarray | None = None
) -> Path:
    path = Path(path)
    path.write_bytes(semantic_kitti_label_bytes(semantic, instance))
    return path


__all__ = [
    "KITTI_CHANNELS",
    "NUSCENES_CHANNELS",
    "SEMANTIC_KITTI_CLASSES",
    "SEMANTIC_KITTI_LABELS",
    "SEMANTIC_KITTI_LEARNING_MAP",
    "apply_learning_map",
    "kitti_bin_bytes",
    "nuscenes_bin_bytes",
    "read_kitti_bin",
    "read_kitti_columns",
    "read_nuscenes_bin",
    "read_nuscenes_columns",
    "read_semantic_kitti_label",
    "read_semantic_kitti_scan",
    "semantic_kitti_label_bytes",
    "write_kitti_bin",
    "write_nuscenes_bin",
    "write_semantic_kitti_label",
]
