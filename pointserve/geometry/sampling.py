"""Point sub-sampling on the CPU: farthest point sampling and pcn's rejection sampling (numpy only).

Computing sample indices here and feeding them to the exported graph as inputs avoids tracing the FPS loop
into thousands of ONNX nodes (and freezing its start) and keeps the choice identical across training,
export, calibration and the service.

Shapes:
    - **points:** :math:`(N, D)` float32 or float64.
    - **farthest_point_sampling output:** :math:`(m,)` int64 indices into ``points``.
    - **neighbors:** :math:`(N, K)` integer neighbour lists of the same ``N`` points (e.g. ``ball_query`` of
      the cloud against itself); entries ``>= N`` are padding.
    - **counts:** :math:`(N,)` integer, real entries per row of ``neighbors`` (optional).
    - **order:** :math:`(N,)` integer, a permutation of ``arange(N)`` (optional).
    - **rejection_sample output:** :math:`(S,)` int64 sampled indices in visiting order, ``S`` depends on the cloud.
"""

from __future__ import annotations

import numpy as np

from pointserve.errors import InputError
from pointserve.geometry.neighbors import _as_int, _as_points

__all__ = ["farthest_point_sampling", "rejection_sample"]


def farthest_point_sampling(points: np.ndarray, m: int, *, start: int = 0, allow_repeat: bool = False) -> np.ndarray:
    """Iterative farthest point sampling of ``m`` indices.

    Starts at ``start`` (default 0, as the PointNet++ CUDA kernel does, so results are deterministic) and then
    repeatedly takes the point whose squared Euclidean distance to the already chosen set is largest; ties go
    to the lowest index (``np.argmax``). Distances are float64 over all given columns. A point already chosen
    is never chosen again, so with ``m <= N`` the indices are distinct even when the cloud has duplicate
    points (once only duplicates remain, the lowest-index unchosen point is taken).

    Args:
        points: ``(N, D)`` cloud.
        m: number of samples, ``>= 0``.
        start: index of the first sample, ``0 <= start < N``.
        allow_repeat: when ``m > N``, return all ``N`` points in FPS order and then repeat that order cyclically
            up to ``m`` (exact for max-pooled networks); without it ``m > N`` is an InputError.

    Returns:
        ``(m,)`` int64 indices in selection order. Cost ``O(N * m)`` time, ``O(N)`` memory.
    """
    pts = _as_points("points", points)
    m = _as_int("m", m, minimum=0)
    n = len(pts)
    if m > n and not allow_repeat:
        raise InputError(f"cannot sample m = {m} distinct points from {n}; pass allow_repeat=True to cycle them")
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 0:
        raise InputError(f"cannot sample m = {m} points from an empty cloud")
    start = _as_int("start", start, minimum=0)
    if start >= n:
        raise InputError(f"start = {start} is out of range for {n} points")

    steps = min(m, n)
    chosen = np.empty(steps, dtype=np.int64)
    chosen[0] = start
    nearest = np.full(n, np.inf)
    cols = [np.ascontiguousarray(pts[:, c]) for c in range(pts.shape[1])]  # contiguous columns vectorise best
    last = start
    for step in range(1, steps):
        dist = np.zeros(n)
        for col in cols:
            diff = col - col[last]
            dist += diff * diff
        np.minimum(nearest, dist, out=nearest)
        # -1 is below every real distance, so a chosen point loses even against an unchosen duplicate at 0.
        nearest[last] = -1.0
        last = int(np.argmax(nearest))
        chosen[step] = last
    if m > n:
        return np.resize(chosen, m)
    return chosen


def rejection_sample(
    neighbors: np.ndarray, counts: np.ndarray | None = None, *, order: np.ndarray | None = None
) -> np.ndarray:
    """pcn's rejection sampling over in-place neighbour lists.

    Points are visited in ``order`` (default index order; pcn shuffles it during training). A visited point that
    no earlier sample has covered is sampled and covers every point in its neighbour row, so samples end up
    roughly one neighbourhood radius apart and their number depends on the cloud.

    Args:
        neighbors: ``(N, K)`` integer neighbour indices of the ``N`` points; entries ``>= N`` (the ball query
            sentinel) are ignored, negative entries are an error.
        counts: optional ``(N,)``; only the first ``counts[i]`` entries of row ``i`` are used (``0..K``).
        order: optional ``(N,)`` permutation of ``arange(N)``, the visiting order.

    Returns:
        ``(S,)`` int64 indices of the sampled points, in visiting order.
    """
    nb = np.asarray(neighbors)
    if nb.ndim != 2:
        raise InputError(f"neighbors must be a 2-D array of shape (N, K), got shape {nb.shape}")
    if nb.dtype == np.bool_ or not np.issubdtype(nb.dtype, np.integer):
        raise InputError(f"neighbors must hold integer indices, got dtype {nb.dtype}")
    n, width = nb.shape
    nb = nb.astype(np.int64)  # a copy: padding is rewritten below
    if (nb < 0).any():
        row = int(np.flatnonzero((nb < 0).any(axis=1))[0])
        raise InputError(f"neighbors has negative indices, first in row {row}")
    # Route padding to an extra slot N of the covered mask: the loop then needs no per-row slicing or filtering.
    nb[nb > n] = n
    if counts is not None:
        cnt = np.asarray(counts)
        if cnt.shape != (n,):
            raise InputError(f"counts must have shape ({n},) to match neighbors, got shape {cnt.shape}")
        if cnt.dtype == np.bool_ or not np.issubdtype(cnt.dtype, np.integer):
            raise InputError(f"counts must hold integers, got dtype {cnt.dtype}")
        if n and (cnt.min() < 0 or cnt.max() > width):
            raise InputError(f"counts must lie in [0, {width}] (the neighbors row length)")
        nb[np.arange(width)[None, :] >= cnt[:, None]] = n
    if order is None:
        visit = range(n)
    else:
        ordr = np.asarray(order)
        if ordr.shape != (n,) or ordr.dtype == np.bool_ or not np.issubdtype(ordr.dtype, np.integer):
            raise InputError(f"order must be an integer array of shape ({n},), got {ordr.dtype} {ordr.shape}")
        if n and not np.array_equal(np.sort(ordr), np.arange(n)):
            raise InputError(f"order must be a permutation of arange({n}) (each point visited exactly once)")
        visit = ordr.astype(np.int64).tolist()

    covered = np.zeros(n + 1, dtype=bool)
    sampled: list[int] = []
    for i in visit:
        if not covered[i]:
            sampled.append(i)
            covered[nb[i]] = True
    return np.asarray(sampled, dtype=np.int64)
