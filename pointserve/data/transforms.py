"""Point-cloud transforms: normalisation, resampling and training augmentation (numpy only).

Every function takes ``points: (N, C)`` with xyz in the first three columns and returns a new array;
augmentations take a ``numpy.random.Generator`` so runs are reproducible from a seed.
Geometric transforms touch xyz (and rotate normals when ``C >= 6``); extra channels ride along.
"""

from __future__ import annotations

import numpy as np

from pointserve.errors import InputError

# Past this, float32's squared distances overflow (float32 max 3.4e38); such clouds are normalised in float64.
_FLOAT32_SAFE_COORDINATE = 1e18


def normalize_unit_sphere(points: np.ndarray) -> np.ndarray:
    """Centre xyz on their centroid and scale them into the unit sphere (float32 out).

    Float32 throughout (what every model was trained on), except for coordinates past 1e18: there the squared
    distances overflowed to inf and every point collapsed onto the origin (a two-point cloud at 1e20 answered
    like a one-point cloud), so those clouds are computed in float64.
    """
    out = np.array(points, dtype=np.float32, copy=True)
    wide = len(out) and float(np.abs(out[:, :3]).max()) > _FLOAT32_SAFE_COORDINATE
    xyz = out[:, :3].astype(np.float64) if wide else out[:, :3]
    xyz -= xyz.mean(axis=0, keepdims=True)
    radius = float(np.sqrt((xyz**2).sum(axis=1)).max()) if len(xyz) else 0.0
    if radius > 0:
        xyz /= radius
    out[:, :3] = xyz
    return out


def normalize(points: np.ndarray, method: str) -> np.ndarray:
    """Apply the normalisation a model card names (``unit_sphere`` or ``none``)."""
    if method == "unit_sphere":
        return normalize_unit_sphere(points)
    if method == "none":
        return np.asarray(points, dtype=np.float32)
    raise InputError(f"unknown normalisation {method!r}")


def resample_indices(num_points: int, target: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices that pick ``target`` points out of ``num_points``: a random subset, or all plus repeats.

    Repeating points is exact for max-pooled networks (a repeated point changes no maximum).
    """
    if num_points < 1:
        raise InputError("cannot resample an empty cloud")
    rng = rng if rng is not None else np.random.default_rng(0)
    if num_points >= target:
        return np.sort(rng.choice(num_points, target, replace=False))
    extra = rng.choice(num_points, target - num_points, replace=True)
    return np.concatenate([np.arange(num_points), extra])


def resample(points: np.ndarray, target: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Return exactly ``target`` points (subsample without replacement, or pad by repetition)."""
    return points[resample_indices(len(points), target, rng)]


def rotate_up(points: np.ndarray, angle: float, up_axis: int = 1) -> np.ndarray:
    """Rotate about the up axis (y by default, as ModelNet and ShapeNet store objects)."""
    c, s = np.cos(angle), np.sin(angle)
    a, b = [i for i in range(3) if i != up_axis]
    rot = np.eye(3, dtype=np.float32)
    rot[a, a], rot[a, b], rot[b, a], rot[b, b] = c, -s, s, c
    out = np.array(points, dtype=np.float32, copy=True)
    out[:, :3] = out[:, :3] @ rot.T
    if out.shape[1] >= 6:
        out[:, 3:6] = out[:, 3:6] @ rot.T
    return out


def random_rotate_up(points: np.ndarray, rng: np.random.Generator, up_axis: int = 1) -> np.ndarray:
    return rotate_up(points, float(rng.uniform(0, 2 * np.pi)), up_axis)


def random_scale(points: np.ndarray, rng: np.random.Generator, low: float = 0.8, high: float = 1.25) -> np.ndarray:
    """Anisotropic scale: each axis by its own factor in [low, high]."""
    out = np.array(points, dtype=np.float32, copy=True)
    out[:, :3] *= rng.uniform(low, high, size=(1, 3)).astype(np.float32)
    return out


def jitter(points: np.ndarray, rng: np.random.Generator, sigma: float = 0.01, clip: float = 0.05) -> np.ndarray:
    out = np.array(points, dtype=np.float32, copy=True)
    out[:, :3] += np.clip(sigma * rng.standard_normal((len(out), 3)), -clip, clip).astype(np.float32)
    return out


def shuffle(points: np.ndarray, rng: np.random.Generator, seg: np.ndarray | None = None):
    """Shuffle point order (and the per-point labels with it)."""
    order = rng.permutation(len(points))
    return points[order], (seg[order] if seg is not None else None)


def random_point_dropout(points: np.ndarray, rng: np.random.Generator, max_ratio: float = 0.875) -> np.ndarray:
    """Replace a random fraction of points by the first point, keeping N fixed (as PointNet++ does)."""
    out = np.array(points, dtype=np.float32, copy=True)
    ratio = rng.uniform(0, max_ratio)
    drop = rng.random(len(out)) <= ratio
    if drop.any() and not drop.all():
        out[drop] = out[0]
    return out


def augment(
    points: np.ndarray, rng: np.random.Generator, seg: np.ndarray | None = None, *, dropout: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """The training augmentation: up-axis rotation, anisotropic scale, jitter, shuffle, point dropout.

    Point dropout is off for segmentation (it would duplicate a point under several labels' positions).
    """
    points = random_rotate_up(points, rng)
    points = random_scale(points, rng)
    points = jitter(points, rng)
    points, seg = shuffle(points, rng, seg)
    if dropout and seg is None:
        points = random_point_dropout(points, rng)
    return points, seg


def jitter_clipped_norm(points: np.ndarray, rng: np.random.Generator, sigma: float = 0.01, clip: float = 0.02):
    """Gaussian jitter of xyz whose per-point offset is clipped to length ``clip`` (pcn's ``clip_by_norm``)."""
    out = np.array(points, dtype=np.float32, copy=True)
    noise = sigma * rng.standard_normal((len(out), 3))
    length = np.linalg.norm(noise, axis=1, keepdims=True)
    noise *= np.minimum(1.0, clip / np.maximum(length, 1e-12))
    out[:, :3] += noise.astype(np.float32)
    return out


def random_small_rotation(points: np.ndarray, rng: np.random.Generator, stddev: float = 0.06, clip: float = 0.18):
    """Rotation about a uniformly random axis by an angle N(0, stddev) clipped to ±clip (radians); normals too."""
    axis = rng.standard_normal(3)
    axis /= max(float(np.linalg.norm(axis)), 1e-12)
    angle = float(np.clip(stddev * rng.standard_normal(), -clip, clip))
    x, y, z = axis
    cross = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    rot = (np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross).astype(np.float32)
    out = np.array(points, dtype=np.float32, copy=True)
    out[:, :3] = out[:, :3] @ rot.T
    if out.shape[1] >= 6:
        out[:, 3:6] = out[:, 3:6] @ rot.T
    return out


def pcn_augment(
    points: np.ndarray, rng: np.random.Generator, seg: np.ndarray | None = None, *, max_drop: float = 0.875
) -> tuple[np.ndarray, np.ndarray | None]:
    """pcn's training augmentation (jackd/pcn ``augment``): shuffle, keep a prefix after dropping a share
    U(0, ``max_drop``) of the points (so the cloud *shrinks*: 1024 -> 128..1024), jitter N(0, 0.01) clipped to
    norm 0.02, a small rotation about a random axis (N(0, 0.06) rad, clipped to 0.18), isotropic scale
    U(0.8, 1.25). Per-point labels follow their points.

    The isotropic scale is kept for fidelity, but note that a unit-sphere card normalises the cloud after this
    (as the service does every request), which undoes it; the point dropout then still varies each cloud's
    extent relative to the fixed radii.
    """
    points, seg = shuffle(points, rng, seg)
    keep = max(1, int(len(points) * (1.0 - rng.uniform(0.0, max_drop))))
    points = points[:keep]
    seg = seg[:keep] if seg is not None else None
    points = jitter_clipped_norm(points, rng)
    points = random_small_rotation(points, rng)
    out = np.array(points, dtype=np.float32, copy=True)
    out[:, :3] *= np.float32(rng.uniform(0.8, 1.25))
    return out, seg
