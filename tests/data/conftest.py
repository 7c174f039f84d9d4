"""Tiny datasets written in each reader's exact on-disk format (real HDF5, .off, .pts/.seg + JSON, .txt)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

# ShapeNet part's 16 categories (synset order) and their part counts, written out here independently of the
# reader's own table so that a mistake there cannot hide in the fixtures.
STANDARD_16 = [
    ("Airplane", "02691156", 4), ("Bag", "02773838", 2), ("Cap", "02954340", 2), ("Car", "02958343", 4),
    ("Chair", "03001627", 4), ("Earphone", "03261776", 3), ("Guitar", "03467517", 3), ("Knife", "03624134", 2),
    ("Lamp", "03636649", 4), ("Laptop", "03642806", 2), ("Motorbike", "03790512", 6), ("Mug", "03797390", 2),
    ("Pistol", "03948459", 3), ("Rocket", "04099429", 3), ("Skateboard", "04225987", 3), ("Table", "04379243", 3),
]  # fmt: skip


def write_h5(path: Path, **arrays: np.ndarray) -> Path:
    with h5py.File(path, "w") as h5:
        for key, value in arrays.items():
            h5.create_dataset(key, data=value)
    return path


def cloud(rng: np.random.Generator, batch: int, points: int) -> np.ndarray:
    return rng.uniform(-1, 1, size=(batch, points, 3)).astype(np.float32)


@pytest.fixture
def modelnet_h5(tmp_path: Path) -> SimpleNamespace:
    """``modelnet40_ply_hdf5_2048/`` with 5 classes, two train files and one test file of 64-point clouds."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "data" / "modelnet40_ply_hdf5_2048"
    folder.mkdir(parents=True)
    classes = ["airplane", "bathtub", "bed", "bench", "bookshelf"]
    (folder / "shape_names.txt").write_text("\n".join(classes) + "\n")
    files = {"train": [("ply_data_train0.h5", 4), ("ply_data_train1.h5", 3)], "test": [("ply_data_test0.h5", 2)]}
    expected = {}
    for split, entries in files.items():
        datas, labels, normals = [], [], []
        for file_name, batch in entries:
            data, label = cloud(rng, batch, 64), rng.integers(0, 5, size=(batch, 1)).astype(np.uint8)
            normal = cloud(rng, batch, 64)
            write_h5(folder / file_name, data=data, label=label, normal=normal)
            datas.append(data), labels.append(label[:, 0]), normals.append(normal)
        lines = [f"data/modelnet40_ply_hdf5_2048/{file_name}" for file_name, _ in entries]
        (folder / f"{split}_files.txt").write_text("\n".join(lines) + "\n")
        expected[split] = (np.concatenate(datas), np.concatenate(labels), np.concatenate(normals))
    return SimpleNamespace(root=tmp_path / "data", folder=folder, classes=classes, expected=expected)


@pytest.fixture
def modelnet_normal(tmp_path: Path) -> SimpleNamespace:
    """``modelnet40_normal_resampled/`` (and its modelnet10 lists) with comma-separated x,y,z,nx,ny,nz rows."""
    rng = np.random.default_rng(2)
    folder = tmp_path / "modelnet40_normal_resampled"
    classes = ["airplane", "night_stand", "sofa"]
    (folder).mkdir()
    (folder / "modelnet40_shape_names.txt").write_text("\n".join(classes) + "\n")
    (folder / "modelnet10_shape_names.txt").write_text("night_stand\nsofa\n")
    ids = {"train": ["airplane_0001", "night_stand_0001", "sofa_0001"], "test": ["airplane_0002", "night_stand_0002"]}
    rows = {}
    for shape_ids in ids.values():
        for shape_id in shape_ids:
            table = rng.uniform(-1, 1, size=(20, 6)).astype(np.float32)
            (folder / shape_id.rsplit("_", 1)[0]).mkdir(exist_ok=True)
            np.savetxt(folder / shape_id.rsplit("_", 1)[0] / f"{shape_id}.txt", table, fmt="%.6f", delimiter=",")
            rows[shape_id] = np.loadtxt(folder / shape_id.rsplit("_", 1)[0] / f"{shape_id}.txt", delimiter=",")
    for split, shape_ids in ids.items():
        (folder / f"modelnet40_{split}.txt").write_text("\n".join(shape_ids) + "\n")
        (folder / f"modelnet10_{split}.txt").write_text("\n".join(i for i in shape_ids if "airplane" not in i) + "\n")
    return SimpleNamespace(root=tmp_path, folder=folder, classes=classes, ids=ids, rows=rows)


CUBE_VERTICES = "0 0 0\n1 0 0\n1 1 0\n0 1 0\n0 0 1\n1 0 1\n1 1 1\n0 1 1\n"
CUBE_QUADS = "4 0 3 2 1\n4 4 5 6 7\n4 0 1 5 4\n4 2 3 7 6\n4 1 2 6 5\n4 0 4 7 3\n"
CUBE_TRIANGLES = "".join(
    f"3 {a} {b} {c}\n3 {a} {c} {d}\n" for a, b, c, d in (line.split()[1:] for line in CUBE_QUADS.splitlines())
)


@pytest.fixture
def modelnet_off(tmp_path: Path) -> SimpleNamespace:
    """``ModelNet10``-style ``<class>/{train,test}/*.off``: unit cubes (triangles, quads, the glued header)."""
    root = tmp_path / "ModelNet10"
    files = {
        "chair/train/chair_0001.off": f"OFF\n8 12 0\n{CUBE_VERTICES}{CUBE_TRIANGLES}",
        "chair/test/chair_0002.off": f"OFF8 6 0\n{CUBE_VERTICES}{CUBE_QUADS}",  # ModelNet's glued header
        "table/train/table_0001.off": f"OFF\n# a comment\n\n8 6 0\n{CUBE_VERTICES}{CUBE_QUADS}",
        "table/test/table_0002.off": f"OFF\n8 12 0\n{CUBE_VERTICES}{CUBE_TRIANGLES}",
    }
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return SimpleNamespace(root=root, files={k: root / k for k in files})


def _write_points(path: Path, points: np.ndarray) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, points, fmt="%.6f", delimiter=" ")
    return np.loadtxt(path).astype(np.float32)


@pytest.fixture
def shapenet_part(tmp_path: Path) -> SimpleNamespace:
    """``shapenetcore_partanno_segmentation_benchmark_v0/`` listing all 16 categories, with Airplane and Mug data."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "shapenetcore_partanno_segmentation_benchmark_v0"
    folder.mkdir()
    # The real file is not in synset order everywhere; the reader must sort by synset.
    lines = [f"{name}\t{synset}" for name, synset, _ in reversed(STANDARD_16)]
    (folder / "synsetoffset2category.txt").write_text("\n".join(lines) + "\n")
    shapes = {
        "train": [("02691156", "a1"), ("02691156", "a2"), ("03797390", "m1")],
        "val": [("03797390", "m2")],
        "test": [("02691156", "a3"), ("03797390", "m3")],
    }
    stored = {}
    for entries in shapes.values():
        for synset, shape_id in entries:
            parts = 4 if synset == "02691156" else 2
            n = int(rng.integers(20, 30))
            points = _write_points(folder / synset / "points" / f"{shape_id}.pts", rng.uniform(-1, 1, (n, 3)))
            local = rng.integers(1, parts + 1, size=n)
            (folder / synset / "points_label").mkdir(parents=True, exist_ok=True)
            (folder / synset / "points_label" / f"{shape_id}.seg").write_text("\n".join(map(str, local)) + "\n")
            stored[shape_id] = (points, local)
    split_folder = folder / "train_test_split"
    split_folder.mkdir()
    for split, entries in shapes.items():
        listing = [f"shape_data/{synset}/{shape_id}" for synset, shape_id in entries]
        (split_folder / f"shuffled_{split}_file_list.json").write_text(json.dumps(listing))
    names = [name for name, _, _ in STANDARD_16]
    return SimpleNamespace(root=tmp_path, folder=folder, shapes=shapes, stored=stored, categories=names)


@pytest.fixture
def shapenet_h5(tmp_path: Path) -> SimpleNamespace:
    """``hdf5_data/`` with the standard 16 categories: train, val and test files with ``data``/``label``/``pid``."""
    rng = np.random.default_rng(4)
    folder = tmp_path / "hdf5_data"
    folder.mkdir()
    lines = [f"{name}\t{synset}" for name, synset, _ in STANDARD_16]
    (folder / "all_object_categories.txt").write_text("\n".join(lines) + "\n")
    offsets = np.cumsum([0] + [count for _, _, count in STANDARD_16])
    expected = {}
    for split, batch in (("train", 3), ("val", 2), ("test", 2)):
        data = cloud(rng, batch, 40)
        label = rng.integers(0, 16, size=(batch, 1)).astype(np.uint8)
        counts = np.array([c for _, _, c in STANDARD_16])[label[:, 0]]
        pid = (offsets[label[:, 0]][:, None] + rng.integers(0, 100, size=(batch, 40)) % counts[:, None]).astype(
            np.uint8
        )
        write_h5(folder / f"ply_data_{split}0.h5", data=data, label=label, pid=pid)
        (folder / f"{split}_hdf5_file_list.txt").write_text(f"ply_data_{split}0.h5\n")
        expected[split] = (data, label[:, 0], pid)
    names = [name for name, _, _ in STANDARD_16]
    return SimpleNamespace(root=tmp_path, folder=folder, expected=expected, categories=names)
