"""Neighbour searches on the CPU: capped ball queries and k-nearest neighbours (numpy + scipy).

These compute the neighbour-index inputs of graph networks (PointNet++ grouping, pcn neighbourhoods, DGCNN
edges) outside the exported graph, so that training, export, calibration and the service share one exact,
deterministic definition instead of each backend's own search.

Distances are Euclidean over *all* columns of the arrays given (callers slice xyz themselves). Every
comparison uses the squared distance accumulated column by column, left to right, in float64; the KD-tree
only proposes candidates, so its own rounding never decides membership or order.

Shapes:
    - **points:** :math:`(N, D)` float32 or float64, the cloud that is searched.
    - **queries:** :math:`(M, D)` float32 or float64, the centres (may be ``points`` itself).
    - **ball_query indices:** :math:`(M, k)` int64 in ``[0, N]``; ``N`` is the padding sentinel.
    - **ball_query counts:** :math:`(M,)` int64 in ``[0, k]``, the real neighbours per row.
    - **knn indices / distances:** :math:`(M, k)` int64 / float32.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.spatial import cKDTree

from pointserve.errors import InputError

__all__ = ["BallQueryResult", "ball_query", "knn"]

# Relative margin between the exact float64 distances and the KD-tree's own (differently rounded) ones.
# Float64 rounding is ~1e-16 relative, so 1e-7 is far outside it yet still picks up only near-ties.
_MARGIN = 1e-7
# Floor of every search radius handed to the tree: its upper bound is strict and it compares squared distances,
# so a radius of 0 (or one whose square underflows) would drop even exact duplicates.
_MIN_SEARCH = 1e-100
# Queries per block in the "first" mode, which has to enumerate every pair inside the ball: bounds memory.
_BLOCK = 4096


@dataclass(frozen=True, eq=False)
class BallQueryResult:
    """Neighbour lists of a capped ball query.

    Attributes:
        indices: ``(M, k)`` int64 point indices; padding slots hold the sentinel ``N`` (or, with
            ``pad="first"``, the row's first neighbour).
        counts: ``(M,)`` int64 number of real neighbours in each row (``<= k``).
    """

    indices: np.ndarray
    counts: np.ndarray


def _as_points(name: str, array: object, *, min_dims: int = 1) -> np.ndarray:
    """``array`` as a C-contiguous float64 ``(N, D)`` array, or an InputError naming what is wrong."""
    try:
        arr = np.asarray(array)
    except Exception as exc:  # ragged lists and the like: report them as bad input, not a crash
        raise InputError(f"{name} must be a 2-D numeric array of shape (N, D): {exc}") from exc
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{name} must hold real numbers (float32 or float64), got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D array of shape (N, D), got shape {arr.shape}")
    if arr.shape[1] < min_dims:
        raise InputError(f"{name} must have at least {min_dims} column(s), got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise InputError(f"{name} has non-finite values (NaN or inf), first in row {row}")
    return arr


def _as_int(name: str, value: object, *, minimum: int) -> int:
    """``value`` as a Python int ``>= minimum``; bools and floats are rejected so ``k=2.5`` cannot slip by."""
    if isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be an integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise InputError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {number}")
    return number


def _sq_dist(points: np.ndarray, queries: np.ndarray, point_idx: np.ndarray, query_idx: np.ndarray) -> np.ndarray:
    """Exact squared distances between ``points[point_idx]`` and ``queries[query_idx]`` (broadcast).

    Accumulated column by column so the rounding is the same whatever the shapes (a reduction over an axis may
    reorder the additions), which keeps results reproducible and equal to a plain loop.
    """
    total = np.zeros(np.broadcast_shapes(point_idx.shape, query_idx.shape), dtype=np.float64)
    for col in range(points.shape[1]):
        diff = points[point_idx, col] - queries[query_idx, col]
        total += diff * diff
    return total


def _nearest(
    tree: cKDTree, points: np.ndarray, queries: np.ndarray, k: int, radius: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k <= N`` nearest points of each query by (exact squared distance, index), optionally within ``radius``.

    Returns ``(indices, sq_dists)`` of shape ``(M, k)``; slots without a point hold index ``N`` and distance inf.
    The tree's order among equal (or nearly equal) distances is arbitrary, so rows whose k-th and (k+1)-th tree
    distances are within the margin are re-solved exactly from every point up to that distance.
    """
    n = len(points)
    m = len(queries)
    extra = 1 if k < n else 0  # one more neighbour tells whether the k-th is tied with the next one
    bound = np.inf if radius is None else max(radius * (1 + _MARGIN), _MIN_SEARCH)
    # distance_upper_bound is strict (a point exactly at the bound is dropped); the margin keeps it inside.
    tree_d, idx = tree.query(queries, k=k + extra, distance_upper_bound=bound)
    tree_d = tree_d.reshape(m, k + extra)
    idx = idx.reshape(m, k + extra).astype(np.int64)

    head_idx = idx[:, :k].copy()
    valid = head_idx < n
    sq = np.full((m, k), np.inf)
    rows = np.broadcast_to(np.arange(m)[:, None], (m, k))
    sq[valid] = _sq_dist(points, queries, head_idx[valid], rows[valid])
    if radius is not None:
        outside = sq > radius * radius
        sq[outside] = np.inf
        head_idx[outside] = n

    if extra:
        kth = tree_d[:, k - 1]
        ambiguous = np.isfinite(tree_d[:, k]) & (tree_d[:, k] <= kth * (1 + _MARGIN))
    else:
        ambiguous = np.zeros(m, dtype=bool)

    # Rows the tree settled: sort its k by (exact distance, index). Padding (inf, N) sorts last.
    order = np.lexsort((head_idx, sq), axis=-1)
    head_idx = np.take_along_axis(head_idx, order, axis=1)
    sq = np.take_along_axis(sq, order, axis=1)

    amb_rows = np.flatnonzero(ambiguous)
    if len(amb_rows):
        reach = np.maximum(tree_d[amb_rows, k - 1] * (1 + 2 * _MARGIN), _MIN_SEARCH)
        if radius is not None:
            reach = np.minimum(reach, bound)
        found = tree.query_ball_point(queries[amb_rows], reach)
        for row, cand in zip(amb_rows.tolist(), found, strict=True):
            cand = np.asarray(cand, dtype=np.int64)
            cand_sq = _sq_dist(points, queries, cand, np.int64(row))
            if radius is not None:
                keep = cand_sq <= radius * radius
                cand, cand_sq = cand[keep], cand_sq[keep]
            best = np.lexsort((cand, cand_sq))[:k]
            head_idx[row] = n
            sq[row] = np.inf
            head_idx[row, : len(best)] = cand[best]
            sq[row, : len(best)] = cand_sq[best]
    return head_idx, sq


def _first_in_ball(
    tree: cKDTree, points: np.ndarray, queries: np.ndarray, k: int, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` lowest point indices inside each closed ball; ``(indices (M, k) padded with N, counts (M,))``."""
    n = len(points)
    m = len(queries)
    out = np.full((m, k), n, dtype=np.int64)
    counts = np.zeros(m, dtype=np.int64)
    search = max(radius * (1 + _MARGIN), _MIN_SEARCH)
    for start in range(0, m, _BLOCK):
        block = queries[start : start + _BLOCK]
        pairs = cKDTree(block).sparse_distance_matrix(tree, search, output_type="ndarray")
        q_of = pairs["i"].astype(np.int64)
        p_of = pairs["j"].astype(np.int64)
        keep = _sq_dist(points, block, p_of, q_of) <= radius * radius
        # One int64 key per pair sorts by (query row, point index) in a single pass.
        key = np.sort(q_of[keep] * n + p_of[keep])
        q_sorted, p_sorted = np.divmod(key, n)
        per_row = np.bincount(q_sorted, minlength=len(block))
        rank = np.arange(len(key)) - (np.cumsum(per_row) - per_row)[q_sorted]
        take = rank < k
        out[start + q_sorted[take], rank[take]] = p_sorted[take]
        counts[start : start + len(block)] = np.minimum(per_row, k)
    return out, counts


def ball_query(
    points: np.ndarray,
    queries: np.ndarray,
    radius: float,
    k: int,
    *,
    mode: Literal["nearest", "first"] = "nearest",
    pad: Literal["sentinel", "first"] = "sentinel",
) -> BallQueryResult:
    """Up to ``k`` points inside the closed ball of ``radius`` around each query.

    A point is in the ball when its squared distance is ``<= radius**2`` (exactly ``radius`` away counts).

    Args:
        points: ``(N, D)`` cloud searched.
        queries: ``(M, D)`` ball centres, same ``D``.
        radius: finite, ``>= 0``.
        k: maximum neighbours per row, ``>= 1`` (may exceed both ``N`` and the number inside the ball).
        mode: ``"nearest"``: the ``k`` nearest inside the ball, sorted by distance, ties by lower index (so with
            exact duplicate points a query's lowest-index duplicate comes before itself). ``"first"``: the first
            ``k`` inside the ball by point index, in index order, as the CUDA ball query of PointNet++ returns
            them (its ``query_ball_point`` scans points in index order and stops at ``k``).
        pad: how slots after the real neighbours are filled. ``"sentinel"``: with ``N``, so a graph can gather
            from the points with one zero row appended. ``"first"``: with the row's first neighbour, the
            PointNet++ convention (repeating a neighbour leaves a max-pool unchanged); a row with no neighbour
            at all still gets the sentinel ``N``.

    Returns:
        :class:`BallQueryResult` with ``indices (M, k)`` and ``counts (M,)``, both int64; ``counts`` is always the
        number of real neighbours, whatever ``pad`` is.

    Cost: ``"nearest"`` asks the KD-tree for ``k + 1`` neighbours per query (memory ``M * k``); ``"first"`` has to
    visit every point inside each ball, so its time and memory grow with the ball's population, not with ``k``.
    """
    pts = _as_points("points", points)
    qs = _as_points("queries", queries)
    if qs.shape[1] != pts.shape[1]:
        raise InputError(f"queries have {qs.shape[1]} column(s) but points have {pts.shape[1]}; they must match")
    k = _as_int("k", k, minimum=1)
    try:
        r = float(radius)
    except (TypeError, ValueError):
        raise InputError(f"radius must be a number, got {radius!r}") from None
    if not np.isfinite(r) or r < 0:
        raise InputError(f"radius must be finite and >= 0, got {radius!r}")
    if mode not in ("nearest", "first"):
        raise InputError(f"mode must be 'nearest' or 'first', got {mode!r}")
    if pad not in ("sentinel", "first"):
        raise InputError(f"pad must be 'sentinel' or 'first', got {pad!r}")

    n, m = len(pts), len(qs)
    if n == 0 or m == 0:
        return BallQueryResult(indices=np.full((m, k), n, dtype=np.int64), counts=np.zeros(m, dtype=np.int64))

    tree = cKDTree(pts)
    if mode == "nearest":
        kk = min(k, n)
        idx, _ = _nearest(tree, pts, qs, kk, r)
        indices = np.full((m, k), n, dtype=np.int64)
        indices[:, :kk] = idx
        counts = (idx < n).sum(axis=1).astype(np.int64)
    else:
        indices, counts = _first_in_ball(tree, pts, qs, k, r)

    if pad == "first":
        # Real neighbours fill a prefix of each row, so every slot from counts[row] on is padding.
        padding = np.arange(k)[None, :] >= counts[:, None]
        padding &= (counts > 0)[:, None]
        indices = np.where(padding, indices[:, :1], indices)
    return BallQueryResult(indices=indices, counts=counts)


def knn(points: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest points of each query.

    Args:
        points: ``(N, D)`` cloud searched.
        queries: ``(M, D)`` query points, same ``D``; pass ``points`` for in-place neighbourhoods.
        k: ``1 <= k <= N``.

    Returns:
        ``(indices, distances)``: ``(M, k)`` int64 and ``(M, k)`` float32 Euclidean (not squared) distances,
        sorted by distance with ties broken by lower index. When the queries are the points themselves each point
        is its own first neighbour at distance 0, unless an exact duplicate of it has a lower index: that
        duplicate (also at distance 0) then comes first.
    """
    pts = _as_points("points", points)
    qs = _as_points("queries", queries)
    if qs.shape[1] != pts.shape[1]:
        raise InputError(f"queries have {qs.shape[1]} column(s) but points have {pts.shape[1]}; they must match")
    k = _as_int("k", k, minimum=1)
    if k > len(pts):
        raise InputError(f"k = {k} is larger than the number of points ({len(pts)})")
    if len(qs) == 0:
        return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
    idx, sq = _nearest(cKDTree(pts), pts, qs, k, None)
    return idx, np.sqrt(sq).astype(np.float32)
