"""voxel_grid and pillar_grid against per-point Python loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pointserve.errors import InputError
from pointserve.geometry import PillarGrid, VoxelGrid, pillar_grid, voxel_grid


def ref_voxels(points, size, origin):
    pts = np.asarray(points, dtype=np.float64)
    keys = [tuple(math.floor((float(p[c]) - origin[c]) / size[c]) for c in range(pts.shape[1])) for p in pts]
    unique = sorted(set(keys))
    where = {key: i for i, key in enumerate(unique)}
    return np.array(unique, dtype=np.int64).reshape(-1, pts.shape[1]), np.array(
        [where[k] for k in keys], dtype=np.int64
    )


def ref_pillars(points, x_range, y_range, size, shape):
    height, width = shape
    cells, point_cell = [], []
    for x, y in np.asarray(points, dtype=np.float64)[:, :2].tolist():
        if not (x_range[0] <= x < x_range[1] and y_range[0] <= y < y_range[1]):
            point_cell.append(None)
            continue
        row = min(math.floor((y - y_range[0]) / size[1]), height - 1)
        col = min(math.floor((x - x_range[0]) / size[0]), width - 1)
        cells.append((row, col))
        point_cell.append((row, col))
    unique = sorted(set(cells))
    where = {cell: i for i, cell in enumerate(unique)}
    point_pillar = np.array([-1 if c is None else where[c] for c in point_cell], dtype=np.int64)
    return np.array(unique, dtype=np.int64).reshape(-1, 2), point_pillar


def cloud(seed, n, dims=3, scale=1.0, dup=0.2):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, dims)) * scale
    n_dup = int(dup * n)
    if n_dup:
        pts[rng.choice(n, n_dup, replace=False)] = pts[rng.choice(n, n_dup)]
    return pts.astype(np.float32)


@pytest.mark.parametrize(
    ("seed", "n", "dims", "size", "origin"),
    [
        (0, 1, 3, 0.1, None),
        (1, 50, 3, 0.25, None),
        (2, 400, 3, (0.2, 0.5, 1.0), None),
        (3, 400, 3, 0.3, (0.0, 0.0, 0.0)),  # points below the origin: negative coordinates
        (4, 200, 2, 0.05, (-1.0, 2.0)),
        (5, 300, 1, 0.4, None),
    ],
)
def test_voxel_grid_matches_brute_force(seed, n, dims, size, origin):
    points = cloud(seed, n, dims)
    grid = voxel_grid(points, size, origin=origin)
    org = points.astype(np.float64).min(axis=0) if origin is None else np.asarray(origin, dtype=np.float64)
    sizes = np.broadcast_to(np.asarray(size, dtype=np.float64), (dims,))
    coords, point_voxel = ref_voxels(points, sizes, org)
    assert isinstance(grid, VoxelGrid)
    assert grid.coords.dtype == np.int64 and grid.point_voxel.dtype == np.int64
    np.testing.assert_array_equal(grid.coords, coords)
    np.testing.assert_array_equal(grid.point_voxel, point_voxel)
    np.testing.assert_array_equal(grid.origin, org)
    np.testing.assert_array_equal(grid.voxel_size, sizes)
    if origin is None:
        assert grid.coords.min() >= 0


def test_voxel_grid_raster_order_and_empty():
    points = np.array([[1.5, 0.2], [0.1, 1.9], [0.2, 0.3], [1.1, 1.1], [0.4, 0.1]])
    grid = voxel_grid(points, 1.0, origin=(0.0, 0.0))
    np.testing.assert_array_equal(grid.coords, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(grid.point_voxel, [2, 1, 0, 3, 0])
    empty = voxel_grid(np.zeros((0, 3)), 0.5)
    assert empty.coords.shape == (0, 3) and empty.point_voxel.shape == (0,)


def test_voxel_grid_is_deterministic():
    points = cloud(7, 1000)
    a, b = voxel_grid(points, 0.2), voxel_grid(points.copy(), 0.2)
    np.testing.assert_array_equal(a.coords, b.coords)
    np.testing.assert_array_equal(a.point_voxel, b.point_voxel)


@pytest.mark.parametrize(
    ("seed", "n", "x_range", "y_range", "size", "shape"),
    [
        (0, 1, (-1.0, 1.0), (-1.0, 1.0), 0.5, (4, 4)),
        (1, 500, (-2.0, 2.0), (-1.0, 1.5), 0.25, (10, 16)),
        (2, 500, (0.0, 3.0), (-3.0, 3.0), (0.3, 0.7), (9, 10)),  # 6 / 0.7 = 8.57 -> 9 rows
        (3, 800, (0.0, 69.12), (-39.68, 39.68), 0.16, (496, 432)),  # PointPillars KITTI car grid
    ],
)
def test_pillar_grid_matches_brute_force(seed, n, x_range, y_range, size, shape):
    points = cloud(seed, n, dims=4, scale=max(x_range[1] - x_range[0], y_range[1] - y_range[0]) / 3)
    points[:, 0] += np.float32(np.mean(x_range))
    points[:, 1] += np.float32(np.mean(y_range))
    grid = pillar_grid(points, x_range, y_range, size)
    sizes = (size, size) if np.isscalar(size) else size
    pillar_rc, point_pillar = ref_pillars(points, x_range, y_range, sizes, shape)
    assert isinstance(grid, PillarGrid)
    assert grid.grid_shape == shape
    np.testing.assert_array_equal(grid.pillar_rc, pillar_rc)
    np.testing.assert_array_equal(grid.point_pillar, point_pillar)
    np.testing.assert_array_equal(grid.inside, point_pillar >= 0)
    expected_occupancy = np.zeros(shape, dtype=bool)
    expected_occupancy[pillar_rc[:, 0], pillar_rc[:, 1]] = True
    np.testing.assert_array_equal(grid.occupancy, expected_occupancy)
    assert grid.pillar_rc.dtype == np.int64 and grid.point_pillar.dtype == np.int64
    assert grid.inside.dtype == np.bool_ and grid.occupancy.dtype == np.bool_


def test_pillar_grid_edges_are_half_open():
    points = np.array([[0.0, 0.0], [1.0, 0.5], [0.999999, 0.999999], [-0.0001, 0.5], [0.5, 1.0], [0.26, 0.74]])
    grid = pillar_grid(points, (0.0, 1.0), (0.0, 1.0), 0.5)
    np.testing.assert_array_equal(grid.inside, [True, False, True, False, False, True])
    np.testing.assert_array_equal(grid.pillar_rc, [[0, 0], [1, 0], [1, 1]])  # (row = y, col = x)
    np.testing.assert_array_equal(grid.point_pillar, [0, -1, 2, -1, -1, 1])


def test_pillar_grid_no_points_inside():
    grid = pillar_grid(np.full((3, 3), 100.0), (0.0, 1.0), (0.0, 2.0), 0.5)
    assert grid.grid_shape == (4, 2)
    assert grid.pillar_rc.shape == (0, 2)
    np.testing.assert_array_equal(grid.point_pillar, [-1, -1, -1])
    assert not grid.occupancy.any()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: voxel_grid(np.zeros((3, 3)), 0.0), "voxel_size must be finite and > 0"),
        (lambda: voxel_grid(np.zeros((3, 3)), (0.1, 0.1)), "voxel_size must be a number or a sequence of 3"),
        (lambda: voxel_grid(np.zeros((3, 3)), "big"), "voxel_size must be a number"),
        (lambda: voxel_grid(np.zeros((3, 3)), 0.1, origin=(0.0, 0.0)), "origin must be 3 finite numbers"),
        (lambda: voxel_grid(np.array([[np.inf, 0.0]]), 0.1), "points has non-finite values"),
        (lambda: voxel_grid(np.array([[0.0], [1e300]]), 1e-300), "voxel coordinates overflow"),
        (lambda: pillar_grid(np.zeros((3, 1)), (0, 1), (0, 1), 0.1), "at least 2 column(s)"),
        (lambda: pillar_grid(np.zeros((3, 3)), (1, 0), (0, 1), 0.1), "x_range must be finite with min < max"),
        (lambda: pillar_grid(np.zeros((3, 3)), (0, 1), (0,), 0.1), "y_range must be a pair"),
        (lambda: pillar_grid(np.zeros((3, 3)), (0, 1), (0, 1), -0.1), "pillar_size must be finite and > 0"),
        (lambda: pillar_grid(np.zeros((3, 3)), (0, 1e6), (0, 1e6), 0.01), "too large"),
        (lambda: pillar_grid(np.zeros((3, 3)), (0, 1e300), (0, 1), 1e-300), "too large"),
    ],
)
def test_grids_bad_input(call, message):
    with pytest.raises(InputError) as info:
        call()
    assert message in str(info.value)
