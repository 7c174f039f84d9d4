"""Synthetic request clouds for load generation and baselines (raw coordinates, as clients send them)."""

from __future__ import annotations


def make_clouds(count: int, num_points: int, channels: int = 3, seed: int = 0):
    """``count`` random clouds (N, C) float32: points on jittered ellipsoids of random size and position."""
    import numpy as np

    rng = np.random.default_rng(seed)
    clouds = []
    for _ in range(count):
        direction = rng.standard_normal((num_points, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        xyz = direction * rng.uniform(0.2, 2.0, size=3) + rng.uniform(-5, 5, size=3)
        extra = rng.standard_normal((num_points, channels - 3))
        clouds.append(np.concatenate([xyz, extra], axis=1).astype(np.float32))
    return clouds
