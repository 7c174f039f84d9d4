"""Dataset readers on tiny files in each exact on-disk format, well-formed and malformed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from pointserve.data.catalog import load_dataset
from pointserve.data.modelnet import read_off, sample_surface
from pointserve.errors import ConfigError, DataError


def write_h5(path: Path, **arrays: np.ndarray) -> None:
    with h5py.File(path, "w") as h5:
        for key, value in arrays.items():
            h5.create_dataset(key, data=value)


def load(name: str, split: str, **options):
    """A split of a registered dataset, by name (the catalogue registers the built-in readers)."""
    return load_dataset(name, split, **options)


def data_error(call, *args, **kwargs) -> str:
    """The message of the DataError ``call`` raises: one line."""
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def source_rows(resampled: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """For each resampled point, the row of ``stored`` it was taken from (every point must come from one)."""
    match = (resampled[:, None, :3] == stored[None, :, :3]).all(axis=2)
    assert match.any(axis=1).all(), "a resampled point is not one of the stored points"
    return match.argmax(axis=1)


# ------------------------------------------------------------------------------------------------- modelnet40_h5


def test_modelnet40_h5_reads_every_cloud_and_label(modelnet_h5):
    for root in (modelnet_h5.root, modelnet_h5.folder):  # the dataset folder or the folder holding it
        train = load("modelnet40_h5", "train", root=root, num_points=64)
        data, labels, _ = modelnet_h5.expected["train"]
        assert (train.name, train.task, train.class_names) == ("modelnet40_h5", "classification", modelnet_h5.classes)
        assert len(train) == 7 and train.in_channels == 3
        np.testing.assert_array_equal(np.stack([s.points for s in train.samples]), data)
        assert [s.label for s in train.samples] == labels.tolist()
    test = load("modelnet40_h5", "test", root=modelnet_h5.root, num_points=64)
    np.testing.assert_array_equal(np.stack([s.points for s in test.samples]), modelnet_h5.expected["test"][0])


def test_modelnet40_h5_resampling_is_seeded_and_keeps_stored_points(modelnet_h5):
    data = modelnet_h5.expected["train"][0]
    first = load("modelnet40_h5", "train", root=modelnet_h5.root, num_points=16, seed=0)
    again = load("modelnet40_h5", "train", root=modelnet_h5.root, num_points=16, seed=0)
    other = load("modelnet40_h5", "train", root=modelnet_h5.root, num_points=16, seed=1)
    assert first.content_hash() == again.content_hash() != other.content_hash()
    for sample, stored in zip(first.samples, data, strict=True):
        rows = source_rows(sample.points, stored)
        assert sample.points.shape == (16, 3) and (np.diff(rows) > 0).all()  # distinct points, stored order
    padded = load("modelnet40_h5", "train", root=modelnet_h5.root, num_points=100)
    assert set(source_rows(padded[0].points, data[0])) == set(range(64))  # all stored points, plus repeats


def test_modelnet40_h5_normals_and_missing_file_lists(modelnet_h5):
    with_normals = load("modelnet40_h5", "test", root=modelnet_h5.root, num_points=64, use_normals=True)
    assert with_normals.in_channels == 6
    np.testing.assert_array_equal(with_normals[1].points[:, 3:], modelnet_h5.expected["test"][2][1])
    (modelnet_h5.folder / "train_files.txt").unlink()  # falls back to ply_data_train*.h5
    assert len(load("modelnet40_h5", "train", root=modelnet_h5.root, num_points=64)) == 7


def _rewrite(folder: Path, file_name: str, **arrays):
    (folder / file_name).unlink()
    write_h5(folder / file_name, **arrays)


RNG = np.random.default_rng(0)
H5_DATA = RNG.uniform(size=(3, 64, 3)).astype(np.float32)
H5_LABEL = np.zeros((3, 1), np.uint8)
MODELNET_H5_BREAKAGES = {
    "missing key": (lambda f: _rewrite(f, "ply_data_train1.h5", data=H5_DATA), "ply_data_train1.h5", "'label'"),
    "wrong shape": (
        lambda f: _rewrite(f, "ply_data_train1.h5", data=H5_DATA[..., :2], label=H5_LABEL),
        "ply_data_train1.h5",
        "(3, 64, 2)",
    ),
    "label out of range": (
        lambda f: _rewrite(f, "ply_data_train1.h5", data=H5_DATA, label=H5_LABEL + 5),
        "ply_data_train1.h5",
        "label 5 at index 0 out of range 0..4",
    ),
    "labels for fewer clouds": (
        lambda f: _rewrite(f, "ply_data_train1.h5", data=H5_DATA, label=H5_LABEL[:2]),
        "ply_data_train1.h5",
        "'label' has shape (2, 1)",
    ),
    "float labels": (
        lambda f: _rewrite(f, "ply_data_train1.h5", data=H5_DATA, label=H5_LABEL.astype(np.float32)),
        "ply_data_train1.h5",
        "expected integer",
    ),
    "not hdf5": (lambda f: (f / "ply_data_train1.h5").write_bytes(b"garbage"), "ply_data_train1.h5", "not a readable"),
    "listed file missing": (lambda f: (f / "ply_data_train0.h5").unlink(), "ply_data_train0.h5", "train_files.txt"),
    "no shape names": (lambda f: (f / "shape_names.txt").unlink(), "shape_names.txt", "missing"),
}


@pytest.mark.parametrize("breakage", list(MODELNET_H5_BREAKAGES))
def test_modelnet40_h5_malformed_files_name_the_file(modelnet_h5, breakage):
    damage, file_name, problem = MODELNET_H5_BREAKAGES[breakage]
    damage(modelnet_h5.folder)
    message = data_error(load, "modelnet40_h5", "train", root=modelnet_h5.root)
    assert file_name in message and problem in message


def test_readers_reject_bad_root_split_and_task(modelnet_h5, tmp_path):
    with pytest.raises(ConfigError, match="data root"):
        load("modelnet40_h5", "train")
    with pytest.raises(ConfigError, match="no split 'val'"):
        load("modelnet40_h5", "val", root=modelnet_h5.root)
    with pytest.raises(ConfigError, match="does not support task"):
        load("modelnet40_h5", "train", root=modelnet_h5.root, task="part_segmentation")
    assert str(tmp_path / "nowhere") in data_error(load, "shapenet_part", "train", root=tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------- modelnet*_normal


def test_modelnet_normal_reads_xyz_normals_and_classes(modelnet_normal):
    train = load("modelnet40_normal", "train", root=modelnet_normal.root, num_points=20)
    assert train.class_names == modelnet_normal.classes and [s.label for s in train.samples] == [0, 1, 2]
    np.testing.assert_allclose(train[1].points, modelnet_normal.rows["night_stand_0001"][:, :3], rtol=0, atol=1e-6)
    normals = load("modelnet40_normal", "test", root=modelnet_normal.folder, num_points=20, use_normals=True)
    assert normals.in_channels == 6
    np.testing.assert_allclose(normals[0].points, modelnet_normal.rows["airplane_0002"], rtol=0, atol=1e-6)
    first = load("modelnet40_normal", "test", root=modelnet_normal.root, num_points=8)  # PointNet++: first N rows
    np.testing.assert_allclose(first[1].points, modelnet_normal.rows["night_stand_0002"][:8, :3], atol=1e-6)
    padded = load("modelnet40_normal", "test", root=modelnet_normal.root, num_points=30)
    assert padded[0].points.shape == (30, 3)
    assert len(set(source_rows(padded[0].points, modelnet_normal.rows["airplane_0002"].astype(np.float32)))) == 20
    ten = load("modelnet10_normal", "train", root=modelnet_normal.root, num_points=20)
    assert ten.class_names == ["night_stand", "sofa"] and [s.label for s in ten.samples] == [0, 1]


@pytest.mark.parametrize(
    ("line", "problem", "use_normals"),
    [
        ("0.1,0.2,oops,0,0,1", "line 5: 'oops' is not a number", False),
        ("0.1,0.2,0.3,0,0", "line 5 has 5 values, expected 6", False),
    ],
)
def test_modelnet_normal_bad_lines_are_named(modelnet_normal, line, problem, use_normals):
    path = modelnet_normal.folder / "sofa" / "sofa_0001.txt"
    lines = path.read_text().splitlines()
    lines[4] = line
    path.write_text("\n".join(lines) + "\n")
    message = data_error(load, "modelnet40_normal", "train", root=modelnet_normal.root, use_normals=use_normals)
    assert str(path) in message and problem in message


def test_modelnet_normal_missing_columns_files_and_classes(modelnet_normal):
    path = modelnet_normal.folder / "sofa" / "sofa_0001.txt"
    path.write_text("0.1,0.2,0.3\n" * 4)
    message = data_error(load, "modelnet40_normal", "train", root=modelnet_normal.root, use_normals=True)
    assert str(path) in message and "expected at least 6" in message
    path.unlink()
    assert str(path) in data_error(load, "modelnet40_normal", "train", root=modelnet_normal.root)
    listing = modelnet_normal.folder / "modelnet40_test.txt"
    listing.write_text("airplane_0002\nlamp_0001\n")
    message = data_error(load, "modelnet40_normal", "test", root=modelnet_normal.root)
    assert str(listing) in message and "line 2" in message and "lamp_0001" in message


# -------------------------------------------------------------------------------------------------- modelnet_off


def on_unit_cube_surface(points: np.ndarray) -> bool:
    xyz = points[:, :3]
    inside = ((xyz > -1e-6) & (xyz < 1 + 1e-6)).all()
    on_a_face = (np.minimum(np.abs(xyz), np.abs(xyz - 1)) < 1e-5).any(axis=1).all()
    return bool(inside and on_a_face)


def test_modelnet_off_samples_mesh_surfaces(modelnet_off):
    train = load("modelnet_off", "train", root=modelnet_off.root, num_points=256, use_normals=True)
    assert train.class_names == ["chair", "table"] and [s.label for s in train.samples] == [0, 1]
    for sample in train.samples:
        assert sample.points.shape == (256, 6) and on_unit_cube_surface(sample.points)
        normals = sample.points[:, 3:]
        np.testing.assert_allclose(np.abs(normals).max(axis=1), 1, atol=1e-6)  # axis-aligned unit face normals
    again = load("modelnet_off", "train", root=modelnet_off.root, num_points=256, use_normals=True)
    other = load("modelnet_off", "train", root=modelnet_off.root, num_points=256, use_normals=True, seed=1)
    assert train.content_hash() == again.content_hash() != other.content_hash()


def test_off_glued_header_and_quads_give_the_same_mesh(modelnet_off):
    glued_quads = read_off(modelnet_off.files["chair/test/chair_0002.off"])
    plain_triangles = read_off(modelnet_off.files["table/test/table_0002.off"])
    commented = read_off(modelnet_off.files["table/train/table_0001.off"])
    for vertices, triangles in (glued_quads, plain_triangles, commented):
        assert vertices.shape == (8, 3) and triangles.shape == (12, 3)
        a, b, c = (vertices[triangles[:, i]] for i in range(3))
        assert np.isclose(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum(), 6.0)


def test_surface_sampling_is_area_weighted():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 2, 0], [5, 0, 0], [8, 0, 0], [5, 2, 0]], dtype=np.float64)
    triangles = np.array([[0, 1, 2], [3, 4, 5]])  # areas 1 and 3
    points = sample_surface(vertices, triangles, 4000, np.random.default_rng(0))
    share_small = float((points[:, 0] < 2.5).mean())
    assert abs(share_small - 0.25) < 0.03
    inside_small = points[points[:, 0] < 2.5]
    assert (inside_small[:, 0] / 1 + inside_small[:, 1] / 2 <= 1 + 1e-6).all()  # within the triangle


CUBE_VERTICES = "0 0 0\n1 0 0\n1 1 0\n0 1 0\n0 0 1\n1 0 1\n1 1 1\n0 1 1\n"
CUBE_QUADS = "4 0 3 2 1\n4 4 5 6 7\n4 0 1 5 4\n4 2 3 7 6\n4 1 2 6 5\n4 0 4 7 3\n"
OFF_BREAKAGES = {
    "not off": ("PLY\n8 12 0\n", "not an OFF file"),
    "bad counts": ("OFF\neight twelve 0\n", "line 2: expected the counts"),
    "truncated": (f"OFF\n8 12 0\n{CUBE_VERTICES}3 0 1 2\n", "declares 8 vertices and 12 faces but has 9 lines"),
    "bad vertex": ("OFF\n8 6 0\n" + CUBE_VERTICES.replace("1 1 0", "1 zz 0") + CUBE_QUADS, "line 5: 'zz'"),
    "index out of range": ("OFF\n8 6 0\n" + CUBE_VERTICES + CUBE_QUADS.replace("4 4 5 6 7", "4 4 5 6 8"), "vertex 8"),
    "two-corner face": ("OFF\n8 6 0\n" + CUBE_VERTICES + CUBE_QUADS.replace("4 4 5 6 7", "2 4 5"), "line 12"),
    "zero area": ("OFF\n3 1 0\n0 0 0\n0 0 0\n0 0 0\n3 0 1 2\n", "no surface"),
}


@pytest.mark.parametrize("breakage", list(OFF_BREAKAGES))
def test_modelnet_off_malformed_meshes_name_the_file(modelnet_off, breakage):
    text, problem = OFF_BREAKAGES[breakage]
    path = modelnet_off.files["table/train/table_0001.off"]
    path.write_text(text)
    message = data_error(load, "modelnet_off", "train", root=modelnet_off.root)
    assert str(path) in message and problem in message


# ------------------------------------------------------------------------------------------------- shapenet_part

MUG, MUG_FIRST_PART = 11, 36  # the 12th category in synset order; parts 36-37 of the standard 50


def test_shapenet_part_maps_local_labels_to_the_standard_global_parts(shapenet_part):
    train = load("shapenet_part", "train", root=shapenet_part.root, num_points=None)
    assert train.task == "part_segmentation" and train.class_names == shapenet_part.categories
    assert len(train.part_names) == 50 and train.part_names[MUG_FIRST_PART] == "Mug/part1"
    assert train.category_parts["Mug"] == [36, 37] and train.category_parts["Table"] == [47, 48, 49]
    order = [shape_id for split in ("train", "val") for _, shape_id in shapenet_part.shapes[split]]
    assert len(train) == len(order) == 4
    for sample, shape_id in zip(train.samples, order, strict=True):
        points, local = shapenet_part.stored[shape_id]
        np.testing.assert_array_equal(sample.points, points)
        offset = MUG_FIRST_PART if shape_id.startswith("m") else 0
        assert sample.label == (MUG if shape_id.startswith("m") else 0)
        np.testing.assert_array_equal(sample.seg, offset + local - 1)
    assert len(load("shapenet_part", "train", root=shapenet_part.root, include_val=False)) == 3
    assert len(load("shapenet_part", "val", root=shapenet_part.root)) == 1
    mugs = load("shapenet_part", "test", root=shapenet_part.root, categories=["mug"])
    assert [s.label for s in mugs.samples] == [MUG]
    with pytest.raises(ConfigError, match="unknown ShapeNet categories"):
        load("shapenet_part", "test", root=shapenet_part.root, categories=["Teapot"])


@pytest.mark.parametrize("num_points", [12, 64])
def test_shapenet_part_resampling_keeps_labels_on_their_points(shapenet_part, num_points):
    test = load("shapenet_part", "test", root=shapenet_part.root, num_points=num_points, seed=3)
    for sample, (_, shape_id) in zip(test.samples, shapenet_part.shapes["test"], strict=True):
        points, local = shapenet_part.stored[shape_id]
        rows = source_rows(sample.points, points)
        offset = MUG_FIRST_PART if shape_id.startswith("m") else 0
        assert sample.points.shape == (num_points, 3) and sample.seg.dtype == np.int64
        np.testing.assert_array_equal(sample.seg, offset + local[rows] - 1)


def test_shapenet_part_as_classification(shapenet_part):
    test = load("shapenet_part", "test", root=shapenet_part.root, task="classification")
    assert [s.label for s in test.samples] == [0, MUG] and all(s.seg is None for s in test.samples)
    assert test.part_names == [] and test.class_names == shapenet_part.categories


def test_shapenet_part_non_standard_category_counts_its_parts(shapenet_part):
    folder = shapenet_part.folder
    (folder / "synsetoffset2category.txt").write_text("Widget\t99999999\nAirplane\t02691156\n")
    (folder / "99999999" / "points").mkdir(parents=True)
    (folder / "99999999" / "points_label").mkdir()
    (folder / "99999999" / "points" / "w1.pts").write_text("0 0 0\n1 1 1\n2 2 2\n")
    (folder / "99999999" / "points_label" / "w1.seg").write_text("1\n3\n2\n")
    split_file = folder / "train_test_split" / "shuffled_test_file_list.json"
    split_file.write_text(json.dumps(["shape_data/99999999/w1", "shape_data/02691156/a3", "shape_data/03797390/m3"]))
    test = load("shapenet_part", "test", root=shapenet_part.root, num_points=None)
    assert test.class_names == ["Airplane", "Widget"]  # synset order; the unlisted Mug is left out
    assert test.category_parts == {"Airplane": [0, 1, 2, 3], "Widget": [4, 5, 6]}
    assert test[0].seg.tolist() == [4, 6, 5] and test.part_names[6] == "Widget/part3"


def _edit_seg(folder: Path, text: str) -> Path:
    path = folder / "02691156" / "points_label" / "a3.seg"
    lines = path.read_text().splitlines()
    path.write_text(text.replace("{lines}", "\n".join(lines)).replace("{most}", "\n".join(lines[:-1])))
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _remove(path: Path) -> Path:
    path.unlink()
    return path


TEST_SPLIT = "train_test_split/shuffled_test_file_list.json"
SHAPENET_BREAKAGES = {
    "label above the category's parts": (lambda f: _edit_seg(f, "5\n{most}\n"), "part label 4 at index 0"),
    "label zero": (lambda f: _edit_seg(f, "0\n{most}\n"), "part label -1 at index 0 out of range 0..3"),
    "one label short": (lambda f: _edit_seg(f, "{most}\n"), "expected one label for each"),
    "garbage label": (lambda f: _edit_seg(f, "1\nx\n{most}\n"), "line 2: 'x' is not a number"),
    "missing seg": (lambda f: _remove(f / "02691156/points_label/a3.seg"), "not found"),
    "garbage point": (
        lambda f: _write(f / "02691156/points/a3.pts", "0 0 0\n0 0\n"),
        "line 2 has 2 values, expected 3",
    ),
    "split not json": (lambda f: _write(f / TEST_SPLIT, "[oops"), "not valid JSON"),
    "split entry not a path": (lambda f: _write(f / TEST_SPLIT, "[5]"), "entry 0 is 5"),
}


@pytest.mark.parametrize("breakage", list(SHAPENET_BREAKAGES))
def test_shapenet_part_malformed_files_name_the_file(shapenet_part, breakage):
    damage, problem = SHAPENET_BREAKAGES[breakage]
    path = damage(shapenet_part.folder)
    message = data_error(load, "shapenet_part", "test", root=shapenet_part.root)
    assert path.name in message and problem in message


# ---------------------------------------------------------------------------------------------- shapenet_part_h5


def test_shapenet_part_h5_reads_clouds_categories_and_part_ids(shapenet_h5):
    train = load("shapenet_part_h5", "train", root=shapenet_h5.root, num_points=40)
    assert train.class_names == shapenet_h5.categories and len(train.part_names) == 50
    assert train.category_parts["Airplane"] == [0, 1, 2, 3] and train.category_parts["Motorbike"] == list(range(30, 36))
    assert train.category_parts["Table"] == [47, 48, 49]
    expected = [
        np.concatenate(parts) for parts in zip(shapenet_h5.expected["train"], shapenet_h5.expected["val"], strict=True)
    ]
    np.testing.assert_array_equal(np.stack([s.points for s in train.samples]), expected[0])
    assert [s.label for s in train.samples] == expected[1].tolist()
    np.testing.assert_array_equal(np.stack([s.seg for s in train.samples]), expected[2])
    assert len(load("shapenet_part_h5", "train", root=shapenet_h5.folder, include_val=False)) == 3


@pytest.mark.parametrize("num_points", [16, 64])
def test_shapenet_part_h5_resampling_keeps_labels_on_their_points(shapenet_h5, num_points):
    test = load("shapenet_part_h5", "test", root=shapenet_h5.root, num_points=num_points)
    data, _, pid = shapenet_h5.expected["test"]
    for i, sample in enumerate(test.samples):
        rows = source_rows(sample.points, data[i])
        np.testing.assert_array_equal(sample.seg, pid[i][rows])


def test_shapenet_part_h5_derives_parts_of_non_standard_categories(tmp_path):
    folder = tmp_path / "hdf5_data"
    folder.mkdir()
    (folder / "all_object_categories.txt").write_text("Widget\t10000001\nGadget\t10000002\n")
    data = np.zeros((2, 4, 3), np.float32) + np.arange(4, dtype=np.float32)[None, :, None]
    write_h5(
        folder / "ply_data_train0.h5", data=data, label=np.array([[0], [1]]), pid=np.array([[0, 1, 1, 0], [2, 3, 2, 3]])
    )
    write_h5(folder / "ply_data_test0.h5", data=data[:1], label=np.array([[1]]), pid=np.array([[4, 2, 2, 2]]))
    (folder / "train_hdf5_file_list.txt").write_text("ply_data_train0.h5\n")
    (folder / "test_hdf5_file_list.txt").write_text("ply_data_test0.h5\n")
    test = load("shapenet_part_h5", "test", root=tmp_path, num_points=None)  # parts seen in every split count
    assert test.category_parts == {"Widget": [0, 1], "Gadget": [2, 3, 4]}
    assert test.part_names == ["Widget/part1", "Widget/part2", "Gadget/part1", "Gadget/part2", "Gadget/part3"]
    write_h5(folder / "ply_data_val0.h5", data=data[:1], label=np.array([[0]]), pid=np.array([[2, 0, 0, 0]]))
    (folder / "val_hdf5_file_list.txt").write_text("ply_data_val0.h5\n")
    assert "part id 2 occurs in categories Widget and Gadget" in data_error(
        load, "shapenet_part_h5", "test", root=tmp_path
    )


def _rewrite_part_h5(folder: Path, **changes):
    with h5py.File(folder / "ply_data_test0.h5", "r") as h5:
        arrays = {key: h5[key][()] for key in h5}
    arrays.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del arrays[key]
    _rewrite(folder, "ply_data_test0.h5", **arrays)


def _foreign_part(folder: Path):
    with h5py.File(folder / "ply_data_test0.h5", "r") as h5:
        label, pid = h5["label"][()], h5["pid"][()]
    pid[0, 7] = 49 if label[0, 0] != 15 else 0  # a part of another category
    _rewrite_part_h5(folder, pid=pid)


SHAPENET_H5_BREAKAGES = {
    "part of another category": (_foreign_part, "sample 0"),
    "part id out of range": (lambda f: _rewrite_part_h5(f, pid=np.full((2, 40), 50, np.uint8)), "part id 50"),
    "category out of range": (lambda f: _rewrite_part_h5(f, label=np.full((2, 1), 16, np.uint8)), "category 16"),
    "missing pid": (lambda f: _rewrite_part_h5(f, pid=None), "missing key 'pid'"),
    "pid shape": (lambda f: _rewrite_part_h5(f, pid=np.zeros((2, 39), np.uint8)), "'pid' has shape (2, 39)"),
    "listed file missing": (lambda f: (f / "ply_data_test0.h5").unlink(), "test_hdf5_file_list.txt"),
}


@pytest.mark.parametrize("breakage", list(SHAPENET_H5_BREAKAGES))
def test_shapenet_part_h5_malformed_files_name_the_file(shapenet_h5, breakage):
    damage, problem = SHAPENET_H5_BREAKAGES[breakage]
    damage(shapenet_h5.folder)
    message = data_error(load, "shapenet_part_h5", "test", root=shapenet_h5.root)
    assert "ply_data_test0.h5" in message and problem in message


# ------------------------------------------------------------------------------------------------------------- CLI


def test_cli_on_a_malformed_dataset_prints_one_error_line(modelnet_h5, tmp_path):
    (modelnet_h5.folder / "ply_data_train1.h5").write_bytes(b"not hdf5")
    command = [sys.executable, "-m", "pointserve", "train", "--dataset", "modelnet40_h5"]
    command += ["--data-root", str(modelnet_h5.root), "--epochs", "1", "-o", str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "ply_data_train1.h5" in lines[0]
