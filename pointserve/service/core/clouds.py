"""One cloud on its way through the service: validation, normalisation, resampling, the family's
preprocessing, batching by the family's collate policy, and back.

Framework-free (no FastAPI, pydantic-settings or prometheus): the batching and preparation that the service,
and anything else serving clouds, share.

Shapes:
    request cloud:   (N, C) float32, raw coordinates as the client sent them
    Cloud.points:    (n, C) float32, normalised with the model card's method; n = N unless resampled
    Cloud.inputs:    the family's per-cloud arrays (e.g. {"points": (n, C)}, + {"category": ()})
    logits per cloud: (K,) classification, (n, P) segmentation
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pointserve.card import ModelCard
from pointserve.data.transforms import normalize, resample_indices
from pointserve.engines.base import Runner
from pointserve.errors import EngineError, InputError, PayloadTooLargeError
from pointserve.models.collate import cloud_inputs, collate, split
from pointserve.models.spec import ArchitectureSpec

# Fixed seed: the same oversized cloud is always resampled the same way (answers are reproducible).
RESAMPLE_SEED = 0


@dataclass(slots=True)
class Cloud:
    """A validated, normalised, preprocessed cloud ready for the batcher (``cost`` = its points, for the
    batch budget)."""

    points: np.ndarray
    category: int | None = None
    kept: np.ndarray | None = None  # indices (into the request's cloud) of the processed points, if resampled
    source_xyz: np.ndarray | None = None  # the whole normalised cloud's xyz, kept only when resampled
    inputs: dict[str, np.ndarray] | None = None  # the family's per-cloud arrays (graph inputs before collation)

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
    if points.dtype.kind == "f" and np.isfinite(points).all():
        _check_dynamic_range(points)  # before the float32 cast, which would merge such points into one
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


# float32 keeps 24 bits: a cloud spanning less than 2^-20 of its distance from the origin keeps at most 4 bits of
# its own shape, and its points merge when they are sent or normalised.
_MIN_RELATIVE_EXTENT = 2.0**-20


def _check_dynamic_range(points: np.ndarray) -> None:
    """Refuse a cloud whose shape float32 cannot hold: tiny compared with its offset from the origin."""
    xyz = points[:, :3].astype(np.float64)
    magnitude = float(np.abs(xyz).max())
    extent = float(np.abs(xyz - xyz.mean(axis=0)).max())
    if 0 < extent < magnitude * _MIN_RELATIVE_EXTENT:
        raise InputError(
            f"the cloud spans {extent:.3g} but lies {magnitude:.3g} from the origin: float32 keeps about 7 digits, "
            "so its points would merge; send coordinates relative to a nearby origin (e.g. subtract the centroid)"
        )


def prepare_cloud(
    points: np.ndarray,
    *,
    spec: ArchitectureSpec,
    card: ModelCard,
    max_processed_points: int,
    category: int | None = None,
) -> Cloud:
    """Normalise the whole cloud as the card says, resample it to ``max_processed_points`` if it is larger,
    then run the family's preprocessor.

    Normalising before resampling keeps the centroid and radius of every point the client sent.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        normalized = normalize(points, card.normalization)
    if not np.isfinite(normalized).all():
        raise InputError("coordinates are too large to normalise in float32 (keep them well below 1e19)")
    if len(normalized) <= max_processed_points:
        cloud = Cloud(np.ascontiguousarray(normalized, dtype=np.float32), category)
    else:
        kept = resample_indices(len(normalized), max_processed_points, np.random.default_rng(RESAMPLE_SEED))
        processed = np.ascontiguousarray(normalized[kept], dtype=np.float32)
        cloud = Cloud(processed, category, kept=kept, source_xyz=np.ascontiguousarray(normalized[:, :3]))
    cloud.inputs = cloud_inputs(spec, card, cloud.points, category)
    return cloud


def group_key(spec: ArchitectureSpec, cloud: Cloud) -> int | None:
    """Which clouds may share a batch: any (None), or for the ``bucket`` policy only those of one size."""
    return len(cloud.points) if spec.collate == "bucket" else None


def run_batch(spec: ArchitectureSpec, card: ModelCard, runner: Runner, clouds: list[Cloud]) -> list[np.ndarray]:
    """Collate the clouds by the family's policy, infer, and split the first output (the logits) per cloud.

    Shapes: returns (K,) or (n_i, P) per cloud.
    """
    feeds, layout = collate(spec, card, [cloud.inputs for cloud in clouds])
    outputs = runner.infer(feeds)
    name = runner.output_names[0]
    try:
        per_cloud = split(spec, card, outputs, layout)
    except InputError as exc:  # the engine answered the wrong shape: the server's fault, not the client's
        raise EngineError(f"runner {runner.name!r}: {exc}") from None
    return [answers[name] for answers in per_cloud]


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
