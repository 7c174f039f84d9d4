"""LiDAR files written byte by byte (struct) in the exact formats: KITTI .bin, SemanticKITTI .label, nuScenes
.pcd.bin; read back exactly, through the readers and through ``read_point_cloud``; malformed ones refused."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from pointserve.data import dataset_info, load_dataset
from pointserve.data.formats import format_from_name, read_point_cloud, read_point_cloud_columns
from pointserve.data.lidar_formats import (
    SEMANTIC_KITTI_CLASSES,
    SEMANTIC_KITTI_LEARNING_MAP,
    apply_learning_map,
    kitti_bin_bytes,
    nuscenes_bin_bytes,
    read_kitti_bin,
    read_nuscenes_bin,
    read_semantic_kitti_label,
    semantic_kitti_label_bytes,
    write_kitti_bin,
    write_semantic_kitti_label,
)
from pointserve.errors import DataError

ROWS = [(1.5, -2.25, 0.125, 0.5), (10.0, 3.0, -1.75, 0.0), (-0.0625, 70.5, 2.0, 1.0)]


def kitti_file(rows=ROWS) -> bytes:
    return b"".join(struct.pack("<4f", *row) for row in rows)


def nuscenes_file(rows=ROWS) -> bytes:
    return b"".join(struct.pack("<5f", *row, float(ring)) for ring, row in enumerate(rows, start=30))


def label_file(pairs) -> bytes:
    return b"".join(struct.pack("<I", (instance << 16) | semantic) for semantic, instance in pairs)


def test_kitti_bin_reads_exactly_by_path_bytes_and_read_point_cloud(tmp_path):
    path = tmp_path / "000000.bin"
    path.write_bytes(kitti_file())
    expected = np.array(ROWS, dtype=np.float32)
    for points in (read_kitti_bin(path), read_kitti_bin(kitti_file(), filename="scan.bin")):
        assert points.dtype == np.float32 and points.shape == (3, 4)
        np.testing.assert_array_equal(points, expected)
    assert format_from_name(path) == "bin"
    np.testing.assert_array_equal(read_point_cloud(path), expected[:, :3])  # channels=3: xyz
    np.testing.assert_array_equal(read_point_cloud(path, channels=4), expected)
    np.testing.assert_array_equal(read_point_cloud(path, channels=None), expected)
    np.testing.assert_array_equal(
        read_point_cloud(kitti_file(), "bin", channels=("intensity", "x")), expected[:, [3, 0]]
    )
    assert list(read_point_cloud_columns(path)) == ["x", "y", "z", "intensity"]


def test_nuscenes_pcd_bin_has_five_columns_with_the_ring_index(tmp_path):
    path = tmp_path / "n015-2018__LIDAR_TOP__1533151603547590.pcd.bin"
    path.write_bytes(nuscenes_file())
    points = read_nuscenes_bin(path)
    assert points.shape == (3, 5) and points.dtype == np.float32
    np.testing.assert_array_equal(points[:, :4], np.array(ROWS, dtype=np.float32))
    np.testing.assert_array_equal(points[:, 4], [30, 31, 32])
    assert format_from_name(path) == "pcd.bin" and format_from_name("X.PCD.BIN") == "pcd.bin"
    np.testing.assert_array_equal(read_point_cloud(path, channels=4), points[:, :4])
    np.testing.assert_array_equal(read_point_cloud(path, channels=None), points)
    assert list(read_point_cloud_columns(path)) == ["x", "y", "z", "intensity", "ring"]


def test_writers_give_the_same_bytes_as_the_format(tmp_path):
    points = np.array(ROWS, dtype=np.float64)
    assert kitti_bin_bytes(points) == kitti_file()
    assert nuscenes_bin_bytes(np.column_stack([points, [30, 31, 32]])) == nuscenes_file()
    assert semantic_kitti_label_bytes(np.array([10, 40, 252]), np.array([0, 7, 65535])) == label_file(
        [(10, 0), (40, 7), (252, 65535)]
    )
    path = write_kitti_bin(tmp_path / "a.bin", points)
    np.testing.assert_array_equal(read_kitti_bin(path), points.astype(np.float32))
    with pytest.raises(DataError, match=r"\(N, 4\)"):
        kitti_bin_bytes(points[:, :3])
    with pytest.raises(DataError, match="0..65535"):
        semantic_kitti_label_bytes(np.array([70000]))


def test_semantic_kitti_label_splits_low_and_high_16_bits(tmp_path):
    pairs = [(10, 0), (40, 3), (252, 12), (0, 0), (81, 65535), (65535, 1)]
    path = tmp_path / "000000.label"
    path.write_bytes(label_file(pairs))
    semantic, instance = read_semantic_kitti_label(path, num_points=len(pairs))
    assert semantic.dtype == np.int64 and instance.dtype == np.int64
    np.testing.assert_array_equal(semantic, [s for s, _ in pairs])
    np.testing.assert_array_equal(instance, [i for _, i in pairs])
    write_semantic_kitti_label(tmp_path / "b.label", semantic, instance)
    assert (tmp_path / "b.label").read_bytes() == path.read_bytes()


def test_learning_map_gives_the_19_classes_and_unlabeled():
    assert len(SEMANTIC_KITTI_CLASSES) == 20 and SEMANTIC_KITTI_CLASSES[0] == "unlabeled"
    assert sorted(set(SEMANTIC_KITTI_LEARNING_MAP.values())) == list(range(20))
    raw = np.array([0, 1, 10, 11, 13, 18, 30, 40, 44, 48, 50, 52, 60, 70, 71, 72, 80, 81, 99, 252, 254, 258, 1234])
    names = [SEMANTIC_KITTI_CLASSES[i] for i in apply_learning_map(raw)]
    assert names == [
        "unlabeled", "unlabeled", "car", "bicycle", "other-vehicle", "truck", "person", "road", "parking",
        "sidewalk", "building", "unlabeled", "road", "vegetation", "trunk", "terrain", "pole", "traffic-sign",
        "unlabeled", "car", "person", "truck", "unlabeled",
    ]  # fmt: skip
    assert apply_learning_map(raw).dtype == np.int64
    np.testing.assert_array_equal(apply_learning_map(raw, {10: 3}), np.where(raw == 10, 3, 0))


@pytest.mark.parametrize(
    "data, name, message",
    [
        (b"", "empty.bin", "empty file"),
        (kitti_file()[:-3], "cut.bin", "45 bytes is not a whole number of KITTI velodyne points (16 bytes each"),
        (kitti_file([(1.0, float("nan"), 0.0, 0.5)]), "nan.bin", "point 0 has nan in y"),
        (kitti_file([(1.0, 2.0, 0.0, 0.5), (float("inf"), 0.0, 0.0, 0.0)]), "inf.bin", "point 1 has inf in x"),
        (kitti_file()[:-4], "four.pcd.bin", "44 bytes is not a whole number of nuScenes lidar points (20 bytes each"),
        (kitti_file(ROWS * 5), "kitti.pcd.bin", "not a whole number 0..255: not a nuScenes"),
    ],
)
def test_malformed_lidar_files_raise_errors_naming_file_and_problem(data, name, message):
    with pytest.raises(DataError) as info:
        read_point_cloud(data, filename=name)
    assert name in str(info.value) and message in str(info.value)


def test_label_files_that_do_not_fit_their_scan_are_refused():
    with pytest.raises(DataError, match="a.label: 3 labels for a scan of 4 points"):
        read_semantic_kitti_label(label_file([(10, 0)] * 3), num_points=4, filename="a.label")
    with pytest.raises(DataError, match="b.label: 7 bytes is not a whole number of uint32 labels"):
        read_semantic_kitti_label(b"\0" * 7, filename="b.label")
    with pytest.raises(DataError, match="c.label: empty label file"):
        read_semantic_kitti_label(b"", filename="c.label")


def test_semantic_kitti_folder_reads_as_a_dataset(tmp_path):
    rng = np.random.default_rng(0)
    stored = {}
    for sequence, scans in (("00", 2), ("08", 1)):
        for kind in ("velodyne", "labels"):
            (tmp_path / "dataset" / "sequences" / sequence / kind).mkdir(parents=True)
        for i in range(scans):
            n = int(rng.integers(5, 9))
            points = rng.uniform(-5, 5, (n, 4)).astype(np.float32)
            raw = rng.choice([10, 40, 48, 70, 252, 0], n)
            folder = tmp_path / "dataset" / "sequences" / sequence
            write_kitti_bin(folder / "velodyne" / f"{i:06d}.bin", points)
            write_semantic_kitti_label(folder / "labels" / f"{i:06d}.label", raw, np.arange(n))
            stored[(sequence, i)] = (points, apply_learning_map(raw))
    train = load_dataset("semantic_kitti", "train", root=tmp_path)
    assert len(train) == 2 and train.in_channels == 4 and train.part_names == SEMANTIC_KITTI_CLASSES
    for i in range(2):
        np.testing.assert_array_equal(train[i].points, stored[("00", i)][0])
        np.testing.assert_array_equal(train[i].seg, stored[("00", i)][1])
    val = load_dataset("semantic_kitti", "val", root=tmp_path / "dataset", num_points=16)
    assert len(val) == 1 and val[0].points.shape == (16, 4) and val[0].seg.shape == (16,)
    assert dataset_info("semantic_kitti").needs_root
    (tmp_path / "dataset" / "sequences" / "00" / "labels" / "000001.label").unlink()
    with pytest.raises(DataError, match="000001.label: missing"):
        load_dataset("semantic_kitti", "train", root=tmp_path)
    with pytest.raises(DataError, match="no scans in sequences 05"):
        load_dataset("semantic_kitti", "train", root=tmp_path, sequences=[5])
