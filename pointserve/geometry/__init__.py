"""CPU geometry toolkit: the graph inputs (neighbour indices, sample indices, grids) of point-cloud networks.

numpy + scipy only, no torch, so training, export, calibration and the service all compute these inputs with
the same deterministic code before handing them to a model or an exported graph.

Neighbours (:mod:`pointserve.geometry.neighbors`):
    - :func:`ball_query` -> :class:`BallQueryResult`: up to ``k`` points in a closed ball, nearest-first or
      first-by-index, padded with the sentinel ``N`` or the first neighbour.
    - :func:`knn`: the ``k`` nearest points with their distances, ties broken by lower index.

Sampling (:mod:`pointserve.geometry.sampling`):
    - :func:`farthest_point_sampling`: deterministic iterative FPS.
    - :func:`rejection_sample`: pcn's rejection sampling over neighbour lists.

Levels (:mod:`pointserve.geometry.hierarchy`):
    - :func:`sample_hierarchy` -> list of :class:`CloudLevel`: pcn's rejection-sampled levels with their
      in-place, down- and up-sampling neighbour lists.

Grids (:mod:`pointserve.geometry.grids`):
    - :func:`voxel_grid` -> :class:`VoxelGrid`: occupied voxels in raster order, voxel per point.
    - :func:`pillar_grid` -> :class:`PillarGrid`: bird's-eye-view pillars for LiDAR, occupancy mask.
"""

from __future__ import annotations

from pointserve.geometry.grids import PillarGrid, VoxelGrid, pillar_grid, voxel_grid
from pointserve.geometry.hierarchy import CloudLevel, sample_hierarchy
from pointserve.geometry.neighbors import BallQueryResult, ball_query, knn
from pointserve.geometry.sampling import farthest_point_sampling, rejection_sample

__all__ = [
    "BallQueryResult",
    "CloudLevel",
    "PillarGrid",
    "VoxelGrid",
    "ball_query",
    "farthest_point_sampling",
    "knn",
    "pillar_grid",
    "rejection_sample",
    "sample_hierarchy",
    "voxel_grid",
]
