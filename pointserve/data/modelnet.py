"""ModelNet readers: PointNet's HDF5 files, PointNet++'s resampled .txt files with normals, and the .off meshes.

Shapes:
    every sample's points: (num_points, 3), or (num_points, 6) xyz + normals with ``use_normals``
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pointserve.data.base import PointCloudDataset, Sample
from pointserve.data.formats import parse_numeric_text, read_file_bytes
from pointserve.data.readers import (
    Root,
    check_array,
    check_labels,
    check_split,
    check_task,
    dataset_dir,
    list_file_paths,
    read_hdf5,
    read_lines,
    resample_batch_indices,
    resample_cloud,
    sample_rng,
)
from pointserve.data.registry import register_dataset
from pointserve.errors import ConfigError, DataError

MODELNET_H5_FOLDER = "modelnet40_ply_hdf5_2048"
MODELNET_NORMAL_FOLDER = "modelnet40_normal_resampled"


@register_dataset("modelnet40_h5")
def load_modelnet40_h5(
    split: str,
    *,
    root: Root = None,
    task: str | None = None,
    num_points: int | None = 1024,
    seed: int = 0,
    use_normals: bool = False,
    **_: object,
) -> PointCloudDataset:
    """``modelnet40_ply_hdf5_2048/``: ``ply_data_{train,test}N.h5`` (``data`` (B, 2048, 3), ``label`` (B, 1)),
    listed in ``{train,test}_files.txt``, class names in ``shape_names.txt``; ``normal`` (B, 2048, 3) if asked."""
    name = "modelnet40_h5"
    check_split(split, ("train", "test"), name)
    check_task(task, ("classification",), name)
    folder = dataset_dir(root, MODELNET_H5_FOLDER, "shape_names.txt", name)
    class_names = read_lines(folder / "shape_names.txt")
    list_file = folder / f"{split}_files.txt"
    if list_file.exists():
        files = list_file_paths(list_file, folder)
    else:  # some copies ship without the lists; the file names say the split
        files = sorted(folder.glob(f"ply_data_{split}*.h5"))
        if not files:
            raise DataError(f"{list_file}: file not found (and no ply_data_{split}*.h5 files beside it)")
    samples: list[Sample] = []
    for file_index, path in enumerate(files):
        arrays = read_hdf5(path, ("data", "label"), ("normal",) if use_normals else ())
        data = check_array(arrays["data"], path, "data", (None, None, 3), "f")
        labels = arrays["label"]
        labels = check_array(labels[:, None] if labels.ndim == 1 else labels, path, "label", (len(data), 1), "iu")
        labels = labels[:, 0].astype(np.int64)
        check_labels(labels, len(class_names), f"{path} ('label'; shape_names.txt has {len(class_names)} classes)")
        if use_normals:
            if "normal" not in arrays:
                raise DataError(f"{path}: missing key 'normal' (use_normals needs it)")
            data = np.concatenate([data, check_array(arrays["normal"], path, "normal", data.shape, "f")], axis=2)
        if num_points is not None and num_points != data.shape[1]:
            index = resample_batch_indices(len(data), data.shape[1], num_points, sample_rng(seed, file_index))
            data = np.take_along_axis(data, index[:, :, None], axis=1)
        data = np.ascontiguousarray(data, dtype=np.float32)
        samples.extend(Sample(points=data[i], label=int(labels[i])) for i in range(len(data)))
    return PointCloudDataset(name, split, "classification", samples, class_names)


def _load_modelnet_normal(
    variant: int, split: str, root: Root, task: str | None, num_points: int | None, seed: int, use_normals: bool
) -> PointCloudDataset:
    name = f"modelnet{variant}_normal"
    check_split(split, ("train", "test"), name)
    check_task(task, ("classification",), name)
    folder = dataset_dir(root, MODELNET_NORMAL_FOLDER, f"modelnet{variant}_shape_names.txt", name)
    class_names = read_lines(folder / f"modelnet{variant}_shape_names.txt")
    class_index = {c: i for i, c in enumerate(class_names)}
    list_file = folder / f"modelnet{variant}_{split}.txt"
    samples = []
    for number, shape_id in enumerate(read_lines(list_file), start=1):
        class_name = shape_id.rsplit("_", 1)[0]  # airplane_0001 -> airplane, night_stand_0001 -> night_stand
        if "_" not in shape_id or class_name not in class_index:
            raise DataError(
                f"{list_file}: line {number}: {shape_id!r} does not name a class of modelnet{variant}_shape_names.txt"
            )
        path = folder / class_name / f"{shape_id}.txt"
        # PointNet++ takes the first N rows (the files are already in random order): parse only those.
        table = parse_numeric_text(
            read_file_bytes(path), str(path), delimiter=",", min_columns=6 if use_normals else 3, max_rows=num_points
        )
        if len(table) == 0:
            raise DataError(f"{path}: has no points")
        points, _ = resample_cloud(table[:, : 6 if use_normals else 3], None, num_points, sample_rng(seed, number))
        samples.append(Sample(points=points, label=class_index[class_name]))
    return PointCloudDataset(name, split, "classification", samples, class_names)


@register_dataset("modelnet40_normal")
def load_modelnet40_normal(
    split: str,
    *,
    root: Root = None,
    task: str | None = None,
    num_points: int | None = 1024,
    seed: int = 0,
    use_normals: bool = False,
    **_: object,
) -> PointCloudDataset:
    """``modelnet40_normal_resampled/``: ``<class>/<id>.txt`` rows ``x,y,z,nx,ny,nz``, ids listed in
    ``modelnet40_{train,test}.txt``, classes in ``modelnet40_shape_names.txt``."""
    return _load_modelnet_normal(40, split, root, task, num_points, seed, use_normals)


@register_dataset("modelnet10_normal")
def load_modelnet10_normal(
    split: str,
    *,
    root: Root = None,
    task: str | None = None,
    num_points: int | None = 1024,
    seed: int = 0,
    use_normals: bool = False,
    **_: object,
) -> PointCloudDataset:
    """The ModelNet10 subset of ``modelnet40_normal_resampled/`` (its ``modelnet10_*`` lists)."""
    return _load_modelnet_normal(10, split, root, task, num_points, seed, use_normals)


@register_dataset("modelnet_off")
def load_modelnet_off(
    split: str,
    *,
    root: Root = None,
    task: str | None = None,
    num_points: int | None = 1024,
    seed: int = 0,
    use_normals: bool = False,
    **_: object,
) -> PointCloudDataset:
    """ModelNet10/40 meshes ``<root>/<class>/{train,test}/*.off``, each sampled on its surface (area-weighted);
    a mesh has no stored point count, so ``num_points=None`` samples 1024. Classes are the sorted class folders."""
    name = "modelnet_off"
    check_split(split, ("train", "test"), name)
    check_task(task, ("classification",), name)
    if root is None:
        raise ConfigError(f"dataset {name!r} is read from disk: give the ModelNet10/ or ModelNet40/ folder as its root")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"{base}: no such directory (data root of dataset {name!r})")
    class_names = sorted(d.name for d in base.iterdir() if (d / "train").is_dir() or (d / "test").is_dir())
    if not class_names:
        raise DataError(f"{base}: no class folders with train/ or test/ inside (expected <class>/{split}/*.off)")
    samples = []
    for label, class_name in enumerate(class_names):
        for path in sorted((base / class_name / split).glob("*.off")):
            vertices, triangles = read_off(path)
            rng = sample_rng(seed, len(samples))
            points = sample_surface(vertices, triangles, num_points or 1024, rng, with_normals=use_normals, name=path)
            samples.append(Sample(points=points, label=label))
    return PointCloudDataset(name, split, "classification", samples, class_names)


def read_off(path: str | os.PathLike, data: bytes | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Parse an OFF mesh; polygons are split into triangles (fans).

    Accepts ModelNet's glued header (``OFF490 518 0`` on one line).

    Shapes:
        returns vertices (V, 3) float64, triangles (T, 3) int64
    """
    data = read_file_bytes(path) if data is None else data
    # (line number, text) of every line that holds data, so errors name the line in the file.
    lines = [(n, t) for n, t in enumerate(data.decode("latin-1").splitlines(), 1) if t.strip() and t.lstrip()[0] != "#"]
    if not lines or not lines[0][1].lstrip().startswith("OFF"):
        raise DataError(f"{path}: not an OFF file (first line must be 'OFF')")
    glued = lines[0][1].strip()[3:].strip()
    if glued:
        counts_line, body = (lines[0][0], glued), lines[1:]
    else:
        counts_line, body = (lines[1] if len(lines) > 1 else None), lines[2:]
    try:
        num_vertices, num_faces = (int(v) for v in counts_line[1].split()[:2])
        if num_vertices < 0 or num_faces < 0:
            raise ValueError
    except (TypeError, ValueError):
        where = f"line {counts_line[0]}" if counts_line else "end of file"
        raise DataError(f"{path}: {where}: expected the counts 'vertices faces edges'") from None
    if len(body) < num_vertices + num_faces:
        raise DataError(f"{path}: declares {num_vertices} vertices and {num_faces} faces but has {len(body)} lines")
    vertex_text = "\n".join(t for _, t in body[:num_vertices]).encode()
    vertices = parse_numeric_text(
        vertex_text, str(path), dtype=np.float64, min_columns=3, first_line=body[0][0] if body else 1
    )
    if len(vertices) != num_vertices:  # only when a comment sat inside the vertex block: still, refuse
        raise DataError(f"{path}: expected {num_vertices} vertex rows, found {len(vertices)}")
    triangles = _triangulate([(n, t.split()) for n, t in body[num_vertices : num_vertices + num_faces]], path)
    bad = np.flatnonzero((triangles < 0).any(axis=1) | (triangles >= num_vertices).any(axis=1))
    if len(bad):
        raise DataError(f"{path}: a face refers to vertex {int(triangles[bad[0]].max())}, only {num_vertices} exist")
    return vertices[:, :3], triangles


def _triangulate(faces: list[tuple[int, list[str]]], path: str | os.PathLike) -> np.ndarray:
    if faces and all(len(tokens) == 4 and tokens[0] == "3" for _, tokens in faces):  # the common all-triangle mesh
        try:
            return np.array([tokens[1:] for _, tokens in faces], dtype=np.int64)
        except ValueError:
            pass  # fall through to the line-by-line path, which names the bad line
    triangles = []
    for number, tokens in faces:
        try:
            size = int(tokens[0])
            corners = [int(t) for t in tokens[1 : 1 + size]]
        except ValueError:
            raise DataError(f"{path}: line {number}: bad face {' '.join(tokens)[:60]!r}") from None
        if size < 3 or len(corners) < size:
            raise DataError(f"{path}: line {number}: a face needs at least 3 vertex indices, got {' '.join(tokens)!r}")
        triangles.extend((corners[0], corners[i], corners[i + 1]) for i in range(1, size - 1))
    return np.array(triangles, dtype=np.int64).reshape(-1, 3)


def sample_surface(
    vertices: np.ndarray,
    triangles: np.ndarray,
    num_points: int,
    rng: np.random.Generator,
    *,
    with_normals: bool = False,
    name: str | os.PathLike = "mesh",
) -> np.ndarray:
    """Sample points uniformly on a triangle mesh's surface: triangles by area, then uniform barycentric points.

    Shapes:
        vertices (V, 3), triangles (T, 3) -> (num_points, 3), or (num_points, 6) with unit face normals
    """
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    cross = np.cross(b - a, c - a)
    area = 0.5 * np.linalg.norm(cross, axis=1)
    total = float(area.sum())
    if not np.isfinite(total) or total <= 0:
        raise DataError(f"{name}: the mesh has no surface to sample (no faces, or all of zero area)")
    chosen = rng.choice(len(area), size=num_points, p=area / total)
    # sqrt makes the barycentric samples uniform over each triangle instead of crowding one corner.
    r1, r2 = np.sqrt(rng.random(num_points))[:, None], rng.random(num_points)[:, None]
    points = (1 - r1) * a[chosen] + r1 * (1 - r2) * b[chosen] + r1 * r2 * c[chosen]
    if with_normals:
        normals = cross[chosen] / np.maximum(np.linalg.norm(cross[chosen], axis=1, keepdims=True), 1e-12)
        points = np.concatenate([points, normals], axis=1)
    return np.ascontiguousarray(points, dtype=np.float32)
