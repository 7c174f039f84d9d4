"""Regular grids over point clouds on the CPU: voxels and bird's-eye-view pillars (numpy only).

The occupied cells come out in raster (lexicographic) order, the order SBNet's CPU ``reduce_mask`` and a
dense ``nonzero`` use, so gather/scatter indices computed from them are deterministic and can be fed to an
exported graph as inputs.

Shapes:
    - **points:** :math:`(N, D)` float32 or float64 (pillars use columns 0 = x and 1 = y, ``D >= 2``).
    - **VoxelGrid.coords:** :math:`(V, D)` int64 occupied voxel coordinates; **point_voxel:** :math:`(N,)` int64.
    - **PillarGrid.pillar_rc:** :math:`(P, 2)` int64 occupied (row, col); **point_pillar:** :math:`(N,)` int64;
      **inside:** :math:`(N,)` bool; **occupancy:** :math:`(H, W)` bool.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pointserve.errors import InputError
from pointserve.geometry.neighbors import _as_points

__all__ = ["PillarGrid", "VoxelGrid", "pillar_grid", "voxel_grid"]

# Grid coordinates must stay well inside int64 after flooring; beyond this the float64 cell index is inexact too.
_MAX_COORD = 2.0**52
# A pillar grid allocates an (H, W) occupancy mask; refuse sizes that are surely a unit mistake (metres vs cm).
_MAX_CELLS = 1 << 28


@dataclass(frozen=True, eq=False)
class VoxelGrid:
    """Occupied voxels of a cloud.

    Attributes:
        coords: ``(V, D)`` int64 unique occupied voxel coordinates, ``floor((p - origin) / voxel_size)``, in
            lexicographic (raster) order, first column slowest.
        point_voxel: ``(N,)`` int64 row of ``coords`` holding each point.
        origin: ``(D,)`` float64 corner of voxel ``(0, ..., 0)``.
        voxel_size: ``(D,)`` float64 edge length per axis.
    """

    coords: np.ndarray
    point_voxel: np.ndarray
    origin: np.ndarray
    voxel_size: np.ndarray


@dataclass(frozen=True, eq=False)
class PillarGrid:
    """Occupied bird's-eye-view pillars of a cloud.

    Attributes:
        inside: ``(N,)`` bool, the point lies in ``x_range`` x ``y_range`` (half-open, ``[min, max)``).
        grid_shape: ``(H, W)``, rows along y and columns along x.
        pillar_rc: ``(P, 2)`` int64 occupied ``(row, col)`` in raster order (row-major).
        point_pillar: ``(N,)`` int64 row of ``pillar_rc`` holding each point, ``-1`` for points outside.
        occupancy: ``(H, W)`` bool, True where a pillar holds at least one point.
        x_range, y_range: the ranges used, as floats.
        pillar_size: ``(size_x, size_y)``.
    """

    inside: np.ndarray
    grid_shape: tuple[int, int]
    pillar_rc: np.ndarray
    point_pillar: np.ndarray
    occupancy: np.ndarray
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    pillar_size: tuple[float, float]


def _per_axis(name: str, value: float | Sequence[float] | np.ndarray, dims: int) -> np.ndarray:
    """A scalar or a length-``dims`` sequence as a ``(dims,)`` float64 array of finite positive numbers."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number or a sequence of {dims} numbers, got {value!r}") from None
    if arr.ndim == 0:
        arr = np.full(dims, float(arr))
    if arr.shape != (dims,):
        raise InputError(f"{name} must be a number or a sequence of {dims} numbers, got shape {arr.shape}")
    if not (np.isfinite(arr).all() and (arr > 0).all()):
        raise InputError(f"{name} must be finite and > 0, got {value!r}")
    return arr


def voxel_grid(
    points: np.ndarray,
    voxel_size: float | Sequence[float] | np.ndarray,
    *,
    origin: Sequence[float] | np.ndarray | None = None,
) -> VoxelGrid:
    """Assign every point to a voxel and list the occupied voxels in raster order.

    Args:
        points: ``(N, D)`` cloud (all columns are gridded; slice xyz first).
        voxel_size: edge length, a scalar or one per axis, each finite and > 0.
        origin: ``(D,)`` corner of voxel 0; default ``points.min(axis=0)`` (zeros for an empty cloud). Points
            below a given origin get negative coordinates.

    Returns:
        :class:`VoxelGrid`; ``coords[point_voxel]`` gives each point's voxel coordinate.
    """
    pts = _as_points("points", points)
    dims = pts.shape[1]
    size = _per_axis("voxel_size", voxel_size, dims)
    if origin is None:
        org = pts.min(axis=0) if len(pts) else np.zeros(dims)
    else:
        try:
            org = np.asarray(origin, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"origin must be a sequence of {dims} numbers, got {origin!r}") from None
        if org.shape != (dims,) or not np.isfinite(org).all():
            raise InputError(f"origin must be {dims} finite numbers (one per column of points), got {origin!r}")
    with np.errstate(over="ignore"):  # an overflow to inf is reported just below, with its cause
        cell = np.floor((pts - org) / size)
    if len(cell) and not np.abs(cell).max() <= _MAX_COORD:
        raise InputError(f"voxel coordinates overflow: voxel_size {voxel_size!r} is too small for the cloud's extent")
    coords = cell.astype(np.int64)
    if len(coords) == 0:
        return VoxelGrid(np.zeros((0, dims), dtype=np.int64), np.zeros(0, dtype=np.int64), org, size)
    # np.unique over rows sorts lexicographically, which is exactly raster order.
    unique, inverse = np.unique(coords, axis=0, return_inverse=True)
    return VoxelGrid(unique.astype(np.int64), inverse.reshape(-1).astype(np.int64), org, size)


def _range(name: str, value: Sequence[float]) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a pair (min, max) of numbers, got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise InputError(f"{name} must be finite with min < max, got {value!r}")
    return low, high


def _cells(extent: float, size: float) -> int:
    """``ceil(extent / size)``, except that a ratio within float rounding of an integer counts as that integer.

    Sizes like 0.16 are not exact in binary: 69.12 / 0.16 is 432.00000000000006, and a plain ceil would add a
    spurious 433rd column that no point can reach.
    """
    ratio = extent / size
    if not ratio <= _MAX_CELLS:  # also catches inf, which round() cannot take
        raise InputError(f"pillar grid is too large: {extent} / {size} cells along one axis (limit {_MAX_CELLS})")
    nearest = round(ratio)
    if nearest >= 1 and abs(ratio - nearest) <= 1e-9 * max(1.0, ratio):
        return int(nearest)
    return max(1, math.ceil(ratio))


def pillar_grid(
    points: np.ndarray,
    x_range: Sequence[float],
    y_range: Sequence[float],
    pillar_size: float | Sequence[float],
) -> PillarGrid:
    """Bin points into bird's-eye-view pillars (PointPillars style) over a fixed x/y range.

    Points with ``x`` outside ``[x_min, x_max)`` or ``y`` outside ``[y_min, y_max)`` are dropped. Column
    ``floor((x - x_min) / size_x)`` and row ``floor((y - y_min) / size_y)`` (clipped into the grid, against
    float rounding right below the upper bound); ``H = ceil((y_max - y_min) / size_y)``,
    ``W = ceil((x_max - x_min) / size_x)``.

    Args:
        points: ``(N, D)``, ``D >= 2``; columns 0 and 1 are x and y, the rest are ignored.
        x_range, y_range: ``(min, max)`` each, finite, ``min < max``.
        pillar_size: a scalar or ``(size_x, size_y)``, finite and > 0.

    Returns:
        :class:`PillarGrid`.
    """
    pts = _as_points("points", points, min_dims=2)
    x0, x1 = _range("x_range", x_range)
    y0, y1 = _range("y_range", y_range)
    sx, sy = (float(v) for v in _per_axis("pillar_size", pillar_size, 2))
    height, width = _cells(y1 - y0, sy), _cells(x1 - x0, sx)
    if height * width > _MAX_CELLS:
        raise InputError(
            f"pillar grid of {height} x {width} cells is too large (limit {_MAX_CELLS}); check pillar_size and ranges"
        )

    x, y = pts[:, 0], pts[:, 1]
    inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    col = np.clip(np.floor((x[inside] - x0) / sx).astype(np.int64), 0, width - 1)
    row = np.clip(np.floor((y[inside] - y0) / sy).astype(np.int64), 0, height - 1)
    flat = row * width + col
    # Sorted unique flat indices are the row-major (raster) order of the occupied pillars.
    occupied, inverse = np.unique(flat, return_inverse=True)
    point_pillar = np.full(len(pts), -1, dtype=np.int64)
    point_pillar[inside] = inverse.reshape(-1)
    occupancy = np.zeros((height, width), dtype=bool)
    occupancy.reshape(-1)[occupied] = True
    pillar_rc = np.stack(np.divmod(occupied, width), axis=1).astype(np.int64).reshape(-1, 2)
    return PillarGrid(
        inside=inside,
        grid_shape=(height, width),
        pillar_rc=pillar_rc,
        point_pillar=point_pillar,
        occupancy=occupancy,
        x_range=(x0, x1),
        y_range=(y0, y1),
        pillar_size=(sx, sy),
    )
