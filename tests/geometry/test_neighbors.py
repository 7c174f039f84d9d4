"""ball_query and knn against brute force: a full distance matrix, then a plain sort per row."""

from __future__ import annotations

import numpy as np
import pytest

from pointserve.errors import InputError
from pointserve.geometry import BallQueryResult, ball_query, knn


def sq_dists(points: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(M, N) squared distances in float64, summed column by column (the documented metric)."""
    p = np.asarray(points, dtype=np.float64)
    q = np.asarray(queries, dtype=np.float64)
    total = np.zeros((len(q), len(p)))
    for c in range(p.shape[1]):
        total += (q[:, None, c] - p[None, :, c]) ** 2
    return total


def ref_ball(points, queries, radius, k, mode="nearest", pad="sentinel"):
    d2 = sq_dists(points, queries)
    n = len(points)
    indices = np.full((len(queries), k), n, dtype=np.int64)
    counts = np.zeros(len(queries), dtype=np.int64)
    for i in range(len(queries)):
        inside = [j for j in range(n) if d2[i, j] <= radius * radius]
        if mode == "nearest":
            inside.sort(key=lambda j, i=i: (d2[i, j], j))
        chosen = inside[:k]
        counts[i] = len(chosen)
        indices[i, : len(chosen)] = chosen
        if pad == "first" and chosen:
            indices[i, len(chosen) :] = chosen[0]
    return indices, counts


def ref_knn(points, queries, k):
    d2 = sq_dists(points, queries)
    idx = np.array([sorted(range(len(points)), key=lambda j, i=i: (d2[i, j], j))[:k] for i in range(len(queries))])
    idx = idx.reshape(len(queries), k).astype(np.int64)
    return idx, np.sqrt(np.take_along_axis(d2, idx, axis=1)).astype(np.float32)


def random_cloud(seed: int, n: int, dims: int = 3, dup: float = 0.2, dtype=np.float32) -> np.ndarray:
    """Uniform points in the unit cube with a share of exact duplicates (ties at every distance)."""
    rng = np.random.default_rng(seed)
    pts = rng.random((n, dims))
    n_dup = int(dup * n)
    if n_dup and n > 1:
        pts[rng.choice(n, n_dup, replace=False)] = pts[rng.choice(n, n_dup)]
    return pts.astype(dtype)


def lattice(side: int, dims: int = 3) -> np.ndarray:
    """Integer grid points shuffled: many points at exactly the same (exactly representable) distances."""
    axes = np.meshgrid(*[np.arange(side, dtype=np.float64)] * dims, indexing="ij")
    pts = np.stack([a.reshape(-1) for a in axes], axis=1)
    return pts[np.random.default_rng(side).permutation(len(pts))]


CASES = [
    # (seed, n points, m queries or None for the points themselves, dims, radius, k)
    (0, 1, None, 3, 0.3, 4),
    (1, 7, None, 3, 0.5, 3),
    (2, 60, None, 3, 0.25, 8),
    (3, 60, 25, 3, 0.4, 100),  # k above N
    (4, 250, None, 3, 0.15, 16),
    (5, 250, 80, 3, 0.2, 5),
    (6, 120, 40, 1, 0.05, 6),
    (7, 120, 40, 5, 0.6, 10),
]


@pytest.mark.parametrize("mode", ["nearest", "first"])
@pytest.mark.parametrize("pad", ["sentinel", "first"])
@pytest.mark.parametrize(("seed", "n", "m", "dims", "radius", "k"), CASES)
def test_ball_query_matches_brute_force(seed, n, m, dims, radius, k, mode, pad):
    points = random_cloud(seed, n, dims)
    queries = points if m is None else random_cloud(seed + 100, m, dims, dup=0.0)
    result = ball_query(points, queries, radius, k, mode=mode, pad=pad)
    expected_idx, expected_counts = ref_ball(points, queries, radius, k, mode, pad)
    assert isinstance(result, BallQueryResult)
    assert result.indices.dtype == np.int64 and result.counts.dtype == np.int64
    assert result.indices.shape == (len(queries), k) and result.counts.shape == (len(queries),)
    np.testing.assert_array_equal(result.indices, expected_idx)
    np.testing.assert_array_equal(result.counts, expected_counts)


@pytest.mark.parametrize("mode", ["nearest", "first"])
@pytest.mark.parametrize(
    ("side", "dims", "radius", "k"), [(5, 3, 1.0, 4), (5, 3, 2.0, 9), (6, 2, 1.5, 3), (4, 3, 0.0, 2)]
)
def test_ball_query_exact_ties_on_a_lattice(side, dims, radius, k, mode):
    # Points exactly on the sphere count (closed ball) and equal distances are broken by index.
    points = lattice(side, dims)
    points = np.concatenate([points, points[:10]])  # duplicates: distance 0 ties too
    result = ball_query(points, points, radius, k, mode=mode)
    expected_idx, expected_counts = ref_ball(points, points, radius, k, mode)
    np.testing.assert_array_equal(result.indices, expected_idx)
    np.testing.assert_array_equal(result.counts, expected_counts)


def test_ball_query_closed_ball_boundary():
    points = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 5.0000001], [0.0, 0.0]])
    result = ball_query(points, np.zeros((1, 2)), 5.0, 4)
    np.testing.assert_array_equal(result.indices, [[0, 3, 1, 4]])
    np.testing.assert_array_equal(result.counts, [3])


def test_ball_query_rows_without_neighbours():
    points = random_cloud(11, 50)
    queries = np.array([[5.0, 5.0, 5.0], [-3.0, 0.0, 0.0]], dtype=np.float32)
    for pad in ("sentinel", "first"):
        result = ball_query(points, queries, 0.5, 6, pad=pad)
        # Nothing to repeat: pad="first" falls back to the sentinel.
        np.testing.assert_array_equal(result.indices, np.full((2, 6), 50))
        np.testing.assert_array_equal(result.counts, [0, 0])


def test_ball_query_pad_first_repeats_the_first_neighbour():
    points = np.array([[0.0], [1.0], [10.0]])
    result = ball_query(points, np.array([[0.2], [20.0]]), 1.0, 4, pad="first")
    np.testing.assert_array_equal(result.indices, [[0, 1, 0, 0], [3, 3, 3, 3]])
    np.testing.assert_array_equal(result.counts, [2, 0])


def test_ball_query_modes_differ_as_documented():
    # Nearest sorts by distance, first keeps index order and caps at k by index.
    points = np.array([[0.9], [0.1], [0.5], [0.0]])
    query = np.zeros((1, 1))
    assert ball_query(points, query, 1.0, 2, mode="nearest").indices.tolist() == [[3, 1]]
    assert ball_query(points, query, 1.0, 2, mode="first").indices.tolist() == [[0, 1]]


def test_ball_query_empty_inputs():
    empty = ball_query(np.zeros((0, 3)), np.ones((2, 3)), 1.0, 3)
    np.testing.assert_array_equal(empty.indices, np.zeros((2, 3)))  # sentinel N = 0
    np.testing.assert_array_equal(empty.counts, [0, 0])
    no_queries = ball_query(np.ones((4, 3)), np.zeros((0, 3)), 1.0, 3)
    assert no_queries.indices.shape == (0, 3) and no_queries.counts.shape == (0,)


@pytest.mark.parametrize("mode", ["nearest", "first"])
def test_ball_query_is_deterministic(mode):
    points = random_cloud(21, 400)
    first = ball_query(points, points, 0.2, 12, mode=mode)
    second = ball_query(points.copy(), points.copy(), 0.2, 12, mode=mode)
    np.testing.assert_array_equal(first.indices, second.indices)
    np.testing.assert_array_equal(first.counts, second.counts)


@pytest.mark.parametrize(
    ("seed", "n", "m", "dims", "k"),
    [(0, 1, None, 3, 1), (1, 9, None, 3, 9), (2, 80, None, 3, 10), (3, 80, 30, 3, 80), (4, 300, 50, 2, 20)],
)
def test_knn_matches_brute_force(seed, n, m, dims, k):
    points = random_cloud(seed, n, dims)
    queries = points if m is None else random_cloud(seed + 100, m, dims, dup=0.0)
    idx, dist = knn(points, queries, k)
    expected_idx, expected_dist = ref_knn(points, queries, k)
    assert idx.dtype == np.int64 and dist.dtype == np.float32
    np.testing.assert_array_equal(idx, expected_idx)
    np.testing.assert_array_equal(dist, expected_dist)


@pytest.mark.parametrize(("side", "dims", "k"), [(4, 3, 7), (5, 2, 5), (3, 3, 27)])
def test_knn_ties_on_a_lattice(side, dims, k):
    points = lattice(side, dims)
    idx, dist = knn(points, points, k)
    expected_idx, expected_dist = ref_knn(points, points, k)
    np.testing.assert_array_equal(idx, expected_idx)
    np.testing.assert_array_equal(dist, expected_dist)


def test_knn_self_is_first_neighbour():
    points = random_cloud(31, 200, dup=0.0)
    idx, dist = knn(points, points, 4)
    np.testing.assert_array_equal(idx[:, 0], np.arange(200))
    np.testing.assert_array_equal(dist[:, 0], 0.0)
    assert (np.diff(dist, axis=1) >= 0).all()


def test_knn_duplicate_with_lower_index_comes_first():
    points = np.array([[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
    idx, dist = knn(points, points, 2)
    np.testing.assert_array_equal(idx, [[0, 2], [1, 0], [0, 2]])
    np.testing.assert_array_equal(dist[:, 0], 0.0)


def test_knn_is_deterministic():
    points = random_cloud(41, 500)
    first = knn(points, points, 16)
    second = knn(points.copy(), points.copy(), 16)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


GOOD = np.zeros((5, 3), dtype=np.float32)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: knn(GOOD, GOOD, 6), "larger than the number of points"),
        (lambda: knn(GOOD, GOOD, 0), "k must be >= 1"),
        (lambda: knn(GOOD, GOOD, 2.0), "k must be an integer"),
        (lambda: knn(GOOD, GOOD, True), "k must be an integer"),
        (lambda: knn(np.zeros(5), GOOD, 1), "points must be a 2-D array"),
        (lambda: knn(GOOD, np.zeros((2, 2)), 1), "queries have 2 column(s) but points have 3"),
        (lambda: knn(np.array([[0.0, np.nan, 0.0]]), GOOD, 1), "points has non-finite values"),
        (lambda: knn(GOOD, np.array([[0.0, 0.0, np.inf]]), 1), "queries has non-finite values"),
        (lambda: knn(GOOD.astype(str), GOOD, 1), "must hold real numbers"),
        (lambda: knn(np.zeros((5, 0)), np.zeros((1, 0)), 1), "at least 1 column"),
        (lambda: ball_query(GOOD, GOOD, -0.1, 2), "radius must be finite and >= 0"),
        (lambda: ball_query(GOOD, GOOD, float("nan"), 2), "radius must be finite"),
        (lambda: ball_query(GOOD, GOOD, "wide", 2), "radius must be a number"),
        (lambda: ball_query(GOOD, GOOD, 0.1, 0), "k must be >= 1"),
        (lambda: ball_query(GOOD, GOOD, 0.1, 2, mode="random"), "mode must be"),
        (lambda: ball_query(GOOD, GOOD, 0.1, 2, pad="zero"), "pad must be"),
        (lambda: ball_query(GOOD, GOOD[:, :2], 0.1, 2), "queries have 2 column(s)"),
        (lambda: ball_query([[0.0, 1.0], [2.0]], GOOD, 0.1, 2), "points must be a 2-D numeric array"),
    ],
)
def test_bad_input_raises_input_error(call, message):
    with pytest.raises(InputError) as info:
        call()
    assert message in str(info.value)
