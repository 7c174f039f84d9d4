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

Sparse blocks (:mod:`pointserve.geometry.blocks`, SBNet's host side):
    - :func:`block_geometry` -> :class:`BlockGeometry`: block size, stride, SAME offset, tile and count.
    - :func:`reduce_mask`: the active blocks of a mask (max or average pooling over ``tol``), raster order.
    - :func:`block_indices` / :func:`sparse_block_inputs` -> :class:`BlockIndices`: gather / scatter rows.
"""

from __future__ import annotations

from pointserve.geometry.blocks import (
    BlockGeometry,
    BlockIndices,
    block_geometry,
    block_indices,
    reduce_mask,
    sparse_block_inputs,
)
from pointserve.geometry.grids import PillarGrid, VoxelGrid, pillar_grid, voxel_grid
from pointserve.geometry.hierarchy import CloudLevel, sample_hierarchy
from pointserve.geometry.neighbors import BallQueryResult, ball_query, knn
from pointserve.geometry.sampling import farthest_point_sampling, rejection_sample

__all__ = [
    "BallQueryResult",
    "BlockGeometry",
    "BlockIndices",
    "CloudLevel",
    "PillarGrid",
    "VoxelGrid",
    "ball_query",
    "block_geometry",
    "block_indices",
    "farthest_point_sampling",
    "knn",
    "pillar_grid",
    "reduce_mask",
    "rejection_sample",
    "sparse_block_inputs",
    "sample_hierarchy",
    "voxel_grid",
]
