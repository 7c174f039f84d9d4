"""The built-in ``lidar_scenes`` dataset: deterministic ray-cast street scans with per-point labels."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pointserve.data import dataset_info, load_dataset
from pointserve.data.lidar_scenes import CLASS_NAMES, SENSOR, generate_scan
from pointserve.data.lidar_sensor import Box, Cylinder, Ellipsoid, LidarSensor, cast_scan
from pointserve.errors import ConfigError
from pointserve.geometry import pillar_grid

SCANS = [generate_scan(0, i) for i in range(4)]  # train scans 0..3 of seed 0, shared by the tests below


def test_same_seed_gives_bit_identical_scans_and_other_seeds_splits_indices_differ():
    points, labels = generate_scan(0, 1)
    assert points.tobytes() == SCANS[1][0].tobytes() and labels.tobytes() == SCANS[1][1].tobytes()
    for other in (generate_scan(1, 1), generate_scan(0, 2), generate_scan(0, 1, split="test")):
        assert other[0].shape != points.shape or not np.array_equal(other[0], points)
    a = load_dataset("lidar_scenes", "test", scans=2)
    b = load_dataset("lidar_scenes", "test", scans=2)
    assert a.content_hash() == b.content_hash()
    assert a.content_hash() != load_dataset("lidar_scenes", "test", scans=2, seed=1).content_hash()


def test_scans_are_kitti_like_float32_xyz_intensity_with_int64_labels():
    for points, labels in SCANS:
        assert points.dtype == np.float32 and points.ndim == 2 and points.shape[1] == 4
        assert labels.dtype == np.int64 and labels.shape == (len(points),)
        assert 25_000 <= len(points) <= 70_000
        assert labels.min() >= 0 and labels.max() < len(CLASS_NAMES)
        assert np.isfinite(points).all() and points[:, 3].min() >= 0 and points[:, 3].max() <= 1
        ranges = np.linalg.norm(points[:, :3], axis=1)
        assert ranges.min() >= SENSOR.min_range - 0.1 and ranges.max() <= SENSOR.max_range + 0.1
        road = points[labels == CLASS_NAMES.index("road"), 2]
        assert -1.95 < np.median(road) < -1.65  # the sensor is mounted 1.7-1.9 m above the road


def test_every_class_appears_within_a_few_scans():
    seen = set().union(*(np.unique(labels).tolist() for _, labels in SCANS))
    assert seen == set(range(len(CLASS_NAMES)))


def test_density_falls_with_range_and_bev_occupancy_is_sparse():
    for points, _ in SCANS:
        r = np.hypot(points[:, 0], points[:, 1])
        rings = [(3, 10), (10, 20), (20, 40), (40, 70)]
        density = [((r >= a) & (r < b)).sum() / (np.pi * (b * b - a * a)) for a, b in rings]
        assert all(near > 2 * far for near, far in zip(density, density[1:], strict=False)), density
        grid = pillar_grid(points, (-40.0, 40.0), (-40.0, 40.0), 0.2)
        assert grid.grid_shape == (400, 400)
        assert 0.005 < grid.occupancy.mean() < 0.20


def test_generation_takes_well_under_a_second_per_scan():
    start = time.perf_counter()
    generate_scan(5, 0)
    elapsed = time.perf_counter() - start
    print(f"one lidar_scenes scan: {1000 * elapsed:.0f} ms")
    assert elapsed < 2.0  # loose: about 0.1 s on one core; shared CI machines are slower


def test_dataset_keeps_scans_whole_or_resamples_them_to_num_points():
    whole = load_dataset("lidar_scenes", "train", scans=2)
    assert len(whole) == 2 and whole.task == "semantic_segmentation" and whole.in_channels == 4
    assert whole.part_names == CLASS_NAMES and whole.class_names == ["street_scene"]
    np.testing.assert_array_equal(whole[1].points, SCANS[1][0])
    np.testing.assert_array_equal(whole[1].seg, SCANS[1][1])
    fixed = load_dataset("lidar_scenes", "train", scans=2, num_points=4096)
    for sample, (points, labels) in zip(fixed.samples, SCANS, strict=False):
        assert sample.points.shape == (4096, 4) and sample.seg.shape == (4096,)
        # each kept point keeps its label: look the points up in the whole scan
        index = {row.tobytes(): i for i, row in enumerate(points)}
        rows = [index[row.tobytes()] for row in sample.points[:50]]
        np.testing.assert_array_equal(sample.seg[:50], labels[rows])
    assert len(load_dataset("lidar_scenes", "train")) == 200 and len(load_dataset("lidar_scenes", "test")) == 50


def test_catalog_describes_it():
    info = dataset_info("lidar_scenes")
    assert info is not None and info.in_channels == 4 and info.channels == ("x", "y", "z", "intensity")
    assert list(info.class_names) == CLASS_NAMES and info.tasks == ("semantic_segmentation",)
    assert not info.needs_root


def test_rejects_unknown_split_and_task():
    with pytest.raises(ConfigError, match="split"):
        load_dataset("lidar_scenes", "holdout")
    with pytest.raises(ConfigError, match="task"):
        load_dataset("lidar_scenes", "train", task="classification")


# ------------------------------------------------------------------------------------------- the ray caster


def _cast(prims, sensor=None, height=1.8):
    sensor = sensor or LidarSensor(range_noise=0.0, dropout=0.0, intensity_noise=0.0, azimuth_step=1.0)
    ground = lambda x, y: (np.full(len(x), 99, dtype=np.int64), np.full(len(x), 0.5))  # noqa: E731
    return cast_scan(sensor, prims, ground, height=height, yaw=0.0, rng=np.random.default_rng(0))


@pytest.mark.parametrize(
    "prim, near_face",
    [
        (Box((10.0, 0.0, 1.0), (2.0, 2.0, 2.0), 1, 0.5), 9.0),
        (Box((10.0, 0.0, 1.0), (2.0, 2.0, 2.0), 1, 0.5, yaw=np.pi / 4), 10.0 - np.sqrt(2)),
        (Cylinder(10.0, 0.0, 1.0, 0.0, 3.0, 1, 0.5), 9.0),
        (Ellipsoid((10.0, 0.0, 1.8), (1.0, 1.0, 1.0), 1, 0.5), 9.0),
    ],
)
def test_rays_stop_at_the_nearest_surface_of_each_primitive(prim, near_face):
    points, labels = _cast([prim])
    hits = points[labels == 1]
    assert len(hits) > 0
    # the near-level beam's returns straight ahead (y ~ 0, z ~ 0 in the sensor frame) lie on the near face
    ahead = hits[(np.abs(hits[:, 1]) < 0.1) & (np.abs(hits[:, 2]) < 0.25)]
    assert len(ahead) and near_face - 0.01 < ahead[:, 0].min() < near_face + 0.1
    assert (labels == 99).sum() > 0 and np.allclose(points[labels == 99, 2], -1.8, atol=1e-4)  # the ground


def test_an_object_hides_what_is_behind_it():
    wall = Box((8.0, 0.0, 2.0), (0.5, 6.0, 4.0), 1, 0.5)
    behind = Box((14.0, 0.0, 1.0), (1.0, 2.0, 2.0), 2, 0.5)
    _, labels = _cast([behind, wall])
    assert (labels == 1).sum() > 0 and (labels == 2).sum() == 0
