"""pcn's cloud levels: each level's lists are the ball queries and rejection sampling they claim to be."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pointserve.errors import InputError
from pointserve.geometry import ball_query, rejection_sample, sample_hierarchy

RADII = [0.2, 0.4, 0.8, 1.6]


def _cloud(n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xyz = rng.standard_normal((n, 3))
    return (xyz / np.linalg.norm(xyz, axis=1, keepdims=True) * rng.uniform(0.8, 1.0, (n, 1))).astype(np.float32)


def test_levels_are_in_place_queries_rejection_samples_and_down_and_up_queries():
    xyz = _cloud()
    levels = sample_hierarchy(xyz, RADII, in_place_k=64, down_sample_k=128, up_sample_k=16)
    assert len(levels) == 4 and levels[0].sample is None and levels[-1].up is None
    coords = xyz.astype(np.float64)
    for index, level in enumerate(levels):
        assert np.array_equal(level.coords, coords.astype(np.float32))
        expected = ball_query(coords, coords, RADII[index], 64)
        assert np.array_equal(level.in_place, expected.indices)
        if index + 1 < len(levels):
            coarse = levels[index + 1]
            assert np.array_equal(coarse.sample, rejection_sample(expected.indices, expected.counts))
            reach = RADII[index] * math.sqrt(2)
            assert np.array_equal(coarse.down, ball_query(coords, coords[coarse.sample], reach, 128).indices)
            assert np.array_equal(level.up, ball_query(coords[coarse.sample], coords, reach, 16).indices)
            # every fine point lies within r of the sample that covered it: no up row is empty
            assert (level.up[:, 0] < coarse.size).all()
            coords = coords[coarse.sample]
    sizes = [level.size for level in levels]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == 300 and sizes[-1] >= 1


def test_samples_are_at_least_a_radius_apart_and_cover_the_cloud():
    xyz = _cloud(seed=1)
    levels = sample_hierarchy(xyz, RADII)
    fine, coarse = levels[0].coords.astype(np.float64), levels[1]
    picked = fine[coarse.sample]
    gaps = np.linalg.norm(picked[:, None] - picked[None], axis=-1) + np.eye(len(picked)) * 9
    assert gaps.min() > RADII[0]
    nearest = np.linalg.norm(fine[:, None] - picked[None], axis=-1).min(axis=1)
    assert nearest.max() <= RADII[0] + 1e-9


def test_deterministic_without_rng_and_for_a_seed():
    xyz = _cloud(seed=2)
    a, b = sample_hierarchy(xyz, RADII), sample_hierarchy(xyz, RADII)
    assert all(np.array_equal(x.in_place, y.in_place) for x, y in zip(a, b, strict=True))
    c = sample_hierarchy(xyz, RADII, rng=np.random.default_rng(7))
    d = sample_hierarchy(xyz, RADII, rng=np.random.default_rng(7))
    assert all(np.array_equal(x.coords, y.coords) for x, y in zip(c, d, strict=True))
    e = sample_hierarchy(xyz, RADII, rng=np.random.default_rng(8))
    assert not np.array_equal(c[1].sample, e[1].sample), "a shuffled visiting order samples other points"
    assert np.all(np.diff(c[1].sample) > 0), "coarse levels keep the fine level's order"


def test_one_point_and_bad_input():
    (level, *rest) = sample_hierarchy(np.zeros((1, 3)), RADII, in_place_k=4, down_sample_k=4)
    assert level.in_place.tolist() == [[0, 1, 1, 1]] and all(r.size == 1 for r in rest)
    with pytest.raises(InputError, match="at least one point"):
        sample_hierarchy(np.zeros((0, 3)), RADII)
    with pytest.raises(InputError, match="radii"):
        sample_hierarchy(_cloud(), [0.1, -1.0])
    with pytest.raises(InputError, match="non-finite"):
        sample_hierarchy(np.full((4, 3), np.nan), RADII)
