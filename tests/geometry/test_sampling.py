"""farthest_point_sampling and rejection_sample against plain-Python references."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pointserve.errors import InputError
from pointserve.geometry import ball_query, farthest_point_sampling, rejection_sample


def sq_dists(points: np.ndarray) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    total = np.zeros((len(p), len(p)))
    for c in range(p.shape[1]):
        total += (p[:, None, c] - p[None, :, c]) ** 2
    return total


def ref_fps(points: np.ndarray, m: int, start: int = 0) -> list[int]:
    """Textbook FPS: distance to the chosen set = min over chosen points; largest wins, lowest index on ties."""
    d2 = sq_dists(points)
    chosen = [start]
    while len(chosen) < m:
        best, best_d = -1, -1.0
        for i in range(len(points)):
            if i in chosen:
                continue
            d = min(d2[i, j] for j in chosen)
            if d > best_d:
                best, best_d = i, d
        chosen.append(best)
    return chosen


def ref_rejection(neighbors: np.ndarray, counts=None, order=None) -> list[int]:
    n = len(neighbors)
    covered: set[int] = set()
    sampled = []
    for i in range(n) if order is None else [int(v) for v in order]:
        if i in covered:
            continue
        sampled.append(i)
        row = neighbors[i] if counts is None else neighbors[i, : counts[i]]
        covered.update(int(j) for j in row if j < n)
    return sampled


def cloud(seed: int, n: int, dims: int = 3, dup: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pts = rng.random((n, dims))
    n_dup = int(dup * n)
    if n_dup:
        pts[rng.choice(n, n_dup, replace=False)] = pts[rng.choice(n, n_dup)]
    return pts.astype(np.float32)


@pytest.mark.parametrize(
    ("seed", "n", "m", "dims", "start", "dup"),
    [
        (0, 1, 1, 3, 0, 0.0),
        (1, 10, 10, 3, 0, 0.0),
        (2, 60, 20, 3, 0, 0.3),
        (3, 120, 30, 3, 7, 0.0),
        (4, 80, 25, 2, 79, 0.5),
    ],
)
def test_fps_matches_brute_force(seed, n, m, dims, start, dup):
    points = cloud(seed, n, dims, dup)
    got = farthest_point_sampling(points, m, start=start)
    assert got.dtype == np.int64 and got.shape == (m,)
    assert got.tolist() == ref_fps(points, m, start)


def test_fps_duplicates_stay_distinct_and_tie_to_lowest_index():
    # Three distinct positions repeated: after them only zero distances remain, so the lowest unchosen index wins.
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [5.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    got = farthest_point_sampling(points, 6)
    assert got.tolist() == [0, 3, 1, 2, 4, 5] == ref_fps(points, 6)


def test_fps_allow_repeat_cycles_the_order():
    points = cloud(5, 4)
    full = farthest_point_sampling(points, 4)
    got = farthest_point_sampling(points, 10, allow_repeat=True)
    assert sorted(full.tolist()) == [0, 1, 2, 3]
    assert got.tolist() == (full.tolist() * 3)[:10]


def test_fps_is_deterministic_and_m_zero():
    points = cloud(6, 2000)
    np.testing.assert_array_equal(farthest_point_sampling(points, 256), farthest_point_sampling(points.copy(), 256))
    assert farthest_point_sampling(points, 0).shape == (0,)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: farthest_point_sampling(np.zeros((3, 3)), 4), "cannot sample m = 4 distinct points from 3"),
        (lambda: farthest_point_sampling(np.zeros((0, 3)), 2, allow_repeat=True), "empty cloud"),
        (lambda: farthest_point_sampling(np.zeros((3, 3)), -1), "m must be >= 0"),
        (lambda: farthest_point_sampling(np.zeros((3, 3)), 2, start=3), "start = 3 is out of range"),
        (lambda: farthest_point_sampling(np.zeros((3, 3)), 2, start=-1), "start must be >= 0"),
        (lambda: farthest_point_sampling(np.full((3, 3), np.nan), 2), "points has non-finite values"),
        (lambda: farthest_point_sampling(np.zeros(3), 2), "points must be a 2-D array"),
    ],
)
def test_fps_bad_input(call, message):
    with pytest.raises(InputError) as info:
        call()
    assert message in str(info.value)


@pytest.mark.parametrize(("seed", "n", "radius", "k"), [(0, 1, 0.1, 4), (1, 50, 0.3, 8), (2, 300, 0.15, 16)])
@pytest.mark.parametrize("use_counts", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_rejection_sample_matches_reference_on_ball_queries(seed, n, radius, k, use_counts, shuffle):
    points = cloud(seed, n, dup=0.2)
    nb = ball_query(points, points, radius, k)
    counts = nb.counts if use_counts else None
    order = np.random.default_rng(seed).permutation(n) if shuffle else None
    got = rejection_sample(nb.indices, counts, order=order)
    assert got.dtype == np.int64
    assert got.tolist() == ref_rejection(nb.indices, counts, order)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rejection_sample_counts_cut_rows(seed):
    # Entries past counts are real indices here, so ignoring them is visible in the result.
    rng = np.random.default_rng(seed)
    n, width = 200, 12
    neighbors = rng.integers(0, n + 3, size=(n, width))  # some entries >= N: sentinels
    counts = rng.integers(0, width + 1, size=n)
    order = rng.permutation(n)
    assert rejection_sample(neighbors, counts, order=order).tolist() == ref_rejection(neighbors, counts, order)
    assert rejection_sample(neighbors).tolist() == ref_rejection(neighbors)


def test_rejection_samples_are_more_than_a_radius_apart():
    # With complete neighbourhoods (k = N) a later sample was never inside an earlier one's ball.
    points = cloud(9, 300)
    radius = 0.2
    nb = ball_query(points, points, radius, len(points))
    sampled = rejection_sample(nb.indices, nb.counts)
    d2 = sq_dists(points[sampled])
    np.fill_diagonal(d2, np.inf)
    assert d2.min() > radius * radius
    # ... and every point is covered by some sample.
    assert (sq_dists(points)[:, sampled].min(axis=1) <= radius * radius).all()


def test_rejection_sample_is_fast_and_deterministic():
    rng = np.random.default_rng(3)
    neighbors = rng.integers(0, 20_000, size=(20_000, 64))
    order = rng.permutation(20_000)
    began = time.perf_counter()
    first = rejection_sample(neighbors, order=order)
    elapsed = time.perf_counter() - began
    assert elapsed < 1.0, f"rejection_sample took {elapsed:.2f} s for 20k x 64"
    np.testing.assert_array_equal(first, rejection_sample(neighbors.copy(), order=order.copy()))


def test_rejection_sample_empty():
    assert rejection_sample(np.zeros((0, 4), dtype=np.int64)).shape == (0,)


NB = np.zeros((4, 3), dtype=np.int64)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rejection_sample(np.zeros(4, dtype=np.int64)), "neighbors must be a 2-D array"),
        (lambda: rejection_sample(NB.astype(np.float32)), "neighbors must hold integer indices"),
        (lambda: rejection_sample(NB - 1), "neighbors has negative indices, first in row 0"),
        (lambda: rejection_sample(NB, np.zeros(3, dtype=np.int64)), "counts must have shape (4,)"),
        (lambda: rejection_sample(NB, np.full(4, 4)), "counts must lie in [0, 3]"),
        (lambda: rejection_sample(NB, np.full(4, 1.0)), "counts must hold integers"),
        (lambda: rejection_sample(NB, order=np.array([0, 1, 1, 3])), "order must be a permutation"),
        (lambda: rejection_sample(NB, order=np.arange(3)), "order must be an integer array of shape (4,)"),
    ],
)
def test_rejection_sample_bad_input(call, message):
    with pytest.raises(InputError) as info:
        call()
    assert message in str(info.value)
