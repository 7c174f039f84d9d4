"""One cloud on its way through the service: validation, normalisation, resampling, padding, and back.

Shapes:
    request cloud:   (N, C) float32, raw coordinates as the client sent them
    Cloud.points:    (n, C) float32, normalised with the model card's method; n = N unless resampled
    padded batch:    (B, n_max, C) float32 — each cloud repeats its own points up to n_max
    logits per cloud: (K,) classification, (n, P) segmentation
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pointserve.data.transforms import normalize, resample_indices
from pointserve.errors import InputError, PayloadTooLargeError

# Fixed seed: the same oversized cloud is always resampled the same way (answers are reproducible).
RESAMPLE_SEED = 0


@dataclass(slots=True)
class Cloud:
    """A validated, normalised cloud ready for the batcher (``cost`` = its points, for the batch budget)."""

    points: np.ndarray
    category: int | None = None
    kept: np.ndarray | None = None  # indices (into the request's cloud) of the processed points, if resampled
    source_xyz: np.ndarray | None = None  # the whole normalised cloud's xyz, kept only when resampled

    @property
    def num_input_points(self) -> int:
        return len(self.source_xyz) if self.source_xyz is not None else len(self.points)

    @property
    def cost(self) -> int:
        return len(self.points)


def check_points(points: np.ndarray, *, channels: int, min_points: int, max_points: int) -> np.ndarray:
    """Refuse anything that is not a finite (N, C) cloud with min_points <= N <= max_points; returns float32.

    Every message names the problem, since it goes back to the client as the 4xx body.
    """
    if points.ndim != 2:
        raise InputError(
            f"points must be a list of points, each with {channels} coordinates (an (N, {channels}) array); "
            f"got an array of shape {tuple(points.shape)}"
        )
    num_points, got_channels = points.shape
    if num_points == 0:
        raise InputError("the point cloud is empty (0 points)")
    if got_channels != channels:
        raise InputError(f"each point must have {channels} coordinates, got {got_channels}")
    if points.dtype != np.float32:
        with np.errstate(over="ignore", invalid="ignore"):
            points = points.astype(np.float32)  # float64 beyond float32's range becomes inf, refused below
    finite = np.isfinite(points)
    if not finite.all():
        bad = int(np.argwhere(~finite)[0][0])
        raise InputError(f"points contain NaN or infinite values (first at point {bad}) — or values beyond float32")
    if num_points < min_points:
        raise InputError(f"the cloud has {num_points} points; this model needs at least {min_points}")
    if num_points > max_points:
        raise PayloadTooLargeError(f"the cloud has {num_points} points, more than the limit of {max_points}")
    return points


def prepare_cloud(
    points: np.ndarray, *, normalization: str, max_processed_points: int, category: int | None = None
) -> Cloud:
    """Normalise the whole cloud, then resample it to ``max_processed_points`` if it is larger.

    Normalising before resampling keeps the centroid and radius of every point the client sent.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        normalized = normalize(points, normalization)
    if not np.isfinite(normalized).all():
        raise InputError("coordinates are too large to normalise in float32 (keep them well below 1e19)")
    if len(normalized) <= max_processed_points:
        return Cloud(np.ascontiguousarray(normalized, dtype=np.float32), category)
    kept = resample_indices(len(normalized), max_processed_points, np.random.default_rng(RESAMPLE_SEED))
    processed = np.ascontiguousarray(normalized[kept], dtype=np.float32)
    return Cloud(processed, category, kept=kept, source_xyz=np.ascontiguousarray(normalized[:, :3]))


def pad_batch(clouds: list[Cloud]) -> np.ndarray:
    """Stack clouds into one (B, n_max, C) array, each padded by cycling through its own points.

    Exact for max-pooled networks: a repeated point changes no maximum, and per-point outputs of the
    original points are unchanged (their first n rows are the cloud itself).
    """
    n_max = max(len(c.points) for c in clouds)
    channels = clouds[0].points.shape[1]
    batch = np.empty((len(clouds), n_max, channels), dtype=np.float32)
    for row, cloud in zip(batch, clouds, strict=True):
        n = len(cloud.points)
        if n == n_max:
            row[:] = cloud.points
        else:
            row[:] = cloud.points[np.arange(n_max) % n]
    return batch


def source_rows(cloud: Cloud) -> np.ndarray | None:
    """For a resampled cloud: for every input point, the processed point whose answer it takes (itself when it
    was processed, else its nearest processed neighbour in xyz). ``None`` when nothing was resampled.

    Shapes: returns (N,) int64 indices into the processed points.
    """
    if cloud.kept is None or cloud.source_xyz is None:
        return None
    from scipy.spatial import cKDTree  # a k-d tree: N log n instead of N x n distances

    rows = np.empty(len(cloud.source_xyz), dtype=np.int64)
    rows[cloud.kept] = np.arange(len(cloud.kept))
    missing = np.ones(len(cloud.source_xyz), dtype=bool)
    missing[cloud.kept] = False
    if missing.any():
        tree = cKDTree(cloud.source_xyz[cloud.kept])
        _, nearest = tree.query(cloud.source_xyz[missing], k=1)
        rows[missing] = nearest
    return rows
