"""pcn's multi-level neighbourhoods: rejection-sampled cloud levels with their in-place, down- and up-sampling
neighbour lists (numpy + scipy, computed on the CPU before the network).

Per level l (radius r_l, doubling from level to level in pcn's networks):

* **in place**: each point of level l queried against level l, radius ``r_l``, at most ``in_place_k`` (64);
* **sample**: level l+1 is the subset of level l kept by :func:`rejection_sample` over those in-place lists,
  so its points are roughly ``r_l`` apart and their number depends on the cloud;
* **down**: each point of level l+1 queried against level l, radius ``r_l * sqrt(2)``, at most
  ``down_sample_k`` (128);
* **up** (segmentation only): each point of level l queried against level l+1, same radius as down, at most
  ``up_sample_k``. Every point of level l lies within ``r_l`` of the sample that covered it, so its row is
  never empty.

Deviations from the reference (jackd/pcn), documented: the ball queries return the *nearest* ``k`` points of
the ball sorted by distance (ties by index), not the first ``k`` a KD-tree traversal finds — deterministic and
independent of tree layout; rejection sampling visits points in index order unless a ``rng`` shuffles it
(training augmentation already shuffles the points, so the service needs no randomness); the up-sampling
lists are a ball query of their own, not the transpose of the down-sampling lists (a padded transpose would
need a data-dependent width).

Shapes (n_l points at level l, sentinel n_l = one past the end of the level indexed):
    - **coords[l]:** (n_l, 3) float32
    - **in_place[l]:** (n_l, in_place_k) int64 into level l
    - **sample[l]:** (n_l,) int64 into level l - 1 (l >= 1)
    - **down[l]:** (n_l, down_sample_k) int64 into level l - 1 (l >= 1)
    - **up[l]:** (n_l, up_sample_k) int64 into level l + 1 (l < L - 1, when asked for)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pointserve.errors import InputError
from pointserve.geometry.neighbors import _as_points, ball_query
from pointserve.geometry.sampling import rejection_sample

__all__ = ["CloudLevel", "sample_hierarchy"]

DOWN_SAMPLE_SCALE = math.sqrt(2.0)


@dataclass(frozen=True, eq=False)
class CloudLevel:
    """One level of a :func:`sample_hierarchy`; ``sample`` / ``down`` are None at level 0, ``up`` at the last."""

    coords: np.ndarray
    radius: float
    in_place: np.ndarray
    sample: np.ndarray | None = None
    down: np.ndarray | None = None
    up: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.coords)


def sample_hierarchy(
    xyz: np.ndarray,
    radii: Sequence[float],
    *,
    in_place_k: int = 64,
    down_sample_k: int = 128,
    up_sample_k: int | None = None,
    rng: np.random.Generator | None = None,
) -> list[CloudLevel]:
    """The levels of one cloud: ``len(radii)`` levels, level 0 the cloud itself.

    Args:
        xyz: (N, 3) coordinates (N >= 1), in the units of ``radii`` (pcn: the unit sphere).
        radii: the in-place radius of each level, increasing.
        in_place_k / down_sample_k: caps of the in-place and down-sampling lists.
        up_sample_k: cap of the up-sampling lists; None computes none (classification).
        rng: shuffles each level's rejection-sampling visiting order; None visits in index order.
    """
    pts = _as_points("xyz", xyz, min_dims=3)[:, :3]
    if len(pts) == 0:
        raise InputError("a cloud needs at least one point")
    radii = [float(r) for r in radii]
    if not radii or any(not math.isfinite(r) or r <= 0 for r in radii):
        raise InputError(f"radii must be positive and finite, got {radii}")
    levels: list[CloudLevel] = []
    coords = pts  # float64 throughout, so every membership decision rounds the same way
    sample = down = None
    for level, radius in enumerate(radii):
        in_place = ball_query(coords, coords, radius, in_place_k)
        last = level + 1 == len(radii)
        up = next_sample = next_down = coarse = None
        if not last:
            order = None if rng is None else rng.permutation(len(coords))
            next_sample = rejection_sample(in_place.indices, in_place.counts, order=order)
            if rng is not None:
                next_sample = np.sort(next_sample)  # the coarse level keeps the fine level's order
            coarse = coords[next_sample]
            reach = radius * DOWN_SAMPLE_SCALE
            next_down = ball_query(coords, coarse, reach, down_sample_k).indices
            if up_sample_k is not None:
                up = ball_query(coarse, coords, reach, up_sample_k).indices
        levels.append(CloudLevel(coords.astype(np.float32), radius, in_place.indices, sample, down, up))
        if last:
            break
        sample, down, coords = next_sample, next_down, coarse
    return levels
