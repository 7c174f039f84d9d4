"""The BEV family's preprocessor: one LiDAR scan -> pillars, point features and SBNet's tile indices (numpy).

A scan ``(n, 4)`` (x y z intensity, metres, the sensor at the origin) is binned into pillars over a square
grid (:func:`pointserve.geometry.pillar_grid`); each point gets PointPillars' nine features (its x y z
intensity, its offset from its pillar's mean and from the pillar's centre); each pillar lists up to ``S``
of its points for the in-graph max-pool, padded by repeating its first point (a repeat changes no maximum,
so nothing needs a Scatter with reduction). The occupancy, dilated by ``mask_dilation`` cells, marks the
active tiles (SBNet's ``reduce_mask`` over each tile's footprint).

The network keeps only the active tiles' pixels, as *tile rows*: row ``m T^2 + (r mod T) T + (c mod T)``
holds the pixel of active tile ``m`` (raster order) at ``(r, c)``. Every occupied cell lies in an active
tile and inactive tiles stay zero, so these rows are the whole pseudo-image: each sparse block gathers its
``(T + 2d)^2`` input block from them (no scatter at all), and two sentinel rows after them stand for an
in-image pixel of an inactive tile (zero) and for a pixel outside the image (the dense twin's padding).
Indices come as (tile, pixel) pairs so that the ``concat`` collate offsets the tile by each cloud's first
tile; the sentinel tile ``m`` becomes the batch's tile count, pixel 0 or 1 picking the sentinel row.

Shapes (one scan of n points, p pillars, m active tiles of T x T; d = 1 and 2):
    point_features (n, 9) float32; point_pillar (n,) int64 in [0, p] (p: outside the grid);
    pillar_points (p, S) int64 in [0, n); pillar_tile, pillar_pixel (p,) int64; tile_pillar (m, T T) int64 in
    [0, p] (the pillar at each tile pixel, p where there is none: the pseudo-image made by a gather, no scatter);
    gather_tile_d{d}, gather_pixel_d{d} (m, T + 2d, T + 2d) int64; tile_cell (m,) int64 in [0, H W):
    each tile's top-left cell (the dense twin's scatter)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage

from pointserve.errors import InputError
from pointserve.geometry.blocks import block_geometry, reduce_mask
from pointserve.geometry.grids import pillar_grid

POINT_FEATURES = 9
DILATIONS = (1, 2)  # the backbone's 3x3 dilations: one gather input each
DEFAULTS: dict[str, Any] = {
    "x_range": [-40.0, 40.0],
    "y_range": [-40.0, 40.0],
    "pillar_size": 0.25,
    "max_points_per_pillar": 16,
    "tile": 8,
    "mask_dilation": 1,
    "dilations": [1, 1, 2, 1],
}


def settings(options: Mapping[str, Any]) -> dict[str, Any]:
    """The preprocessing parameters (the card's ``preprocessing``), checked: the grid must be a tile multiple."""
    p = {**DEFAULTS, **{k: options[k] for k in DEFAULTS if k in options}}
    height, width = grid_shape(p)
    tile = int(p["tile"])
    if height % tile or width % tile:
        raise InputError(f"the {height} x {width} BEV grid must be a multiple of the tile {tile}")
    p["dilations"] = [int(d) for d in p["dilations"]]
    if not p["dilations"] or set(p["dilations"]) - set(DILATIONS):
        raise InputError(f"dilations must be a list of {DILATIONS}, got {p['dilations']}")
    return p


def grid_shape(p: Mapping[str, Any]) -> tuple[int, int]:
    size = float(p["pillar_size"])
    (x0, x1), (y0, y1) = p["x_range"], p["y_range"]
    return round((y1 - y0) / size), round((x1 - x0) / size)


def gather_names(dilation: int) -> tuple[str, str]:
    return f"gather_tile_d{dilation}", f"gather_pixel_d{dilation}"


def active_tiles(occupancy: np.ndarray, tile: int, dilation: int) -> np.ndarray:
    """``(m, 3)`` active tiles ``(0, row, col)``: those the occupancy, dilated by ``dilation`` cells, touches."""
    mask = ndimage.binary_dilation(occupancy, iterations=dilation) if dilation else occupancy
    return reduce_mask(mask, block_geometry(occupancy.shape, kernel=1, tile=tile))


def tile_gather(tile_id: np.ndarray, tiles: np.ndarray, tile: int, dilation: int, shape: tuple[int, int]):
    """(tile, pixel) of every input pixel of every active tile's ``(T + 2d)^2`` block (see the module's layout)."""
    height, width = shape
    count = len(tiles)
    offsets = np.arange(tile + 2 * dilation) - dilation
    rows = tiles[:, 1, None, None] * tile + offsets[None, :, None]
    cols = tiles[:, 2, None, None] * tile + offsets[None, None, :]
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    owner = np.where(inside, tile_id[np.clip(rows, 0, height - 1) // tile, np.clip(cols, 0, width - 1) // tile], -1)
    active = owner >= 0
    pixel = np.where(active, (rows % tile) * tile + cols % tile, np.where(inside, 0, 1))
    return np.where(active, owner, count).astype(np.int64), pixel.astype(np.int64)


def preprocess_scan(points: np.ndarray, p: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """One scan ``(n, C >= 4)`` -> the graph's per-cloud arrays (see the module's Shapes)."""
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] < 3:
        raise InputError(f"a scan is (n, 4): x y z intensity (or (n, 3) without intensity); got {points.shape}")
    grid = pillar_grid(points, p["x_range"], p["y_range"], p["pillar_size"])
    height, width = grid.grid_shape
    n, num_pillars = len(points), len(grid.pillar_rc)
    inside = grid.point_pillar >= 0
    pillar_of = grid.point_pillar[inside]
    counts = np.bincount(pillar_of, minlength=num_pillars)
    xyz = points[:, :3].astype(np.float64)
    means = np.zeros((num_pillars, 3))
    np.add.at(means, pillar_of, xyz[inside])
    means /= np.maximum(counts, 1)[:, None]
    size_x, size_y = grid.pillar_size
    rc = grid.pillar_rc
    centres = np.stack([grid.x_range[0] + (rc[:, 1] + 0.5) * size_x, grid.y_range[0] + (rc[:, 0] + 0.5) * size_y], 1)
    features = np.zeros((n, POINT_FEATURES), dtype=np.float32)
    features[:, : min(4, points.shape[1])] = points[:, :4]  # no intensity column: zero
    features[inside, 4:7] = xyz[inside] - means[pillar_of]
    features[inside, 7:9] = xyz[inside, :2] - centres[pillar_of]

    # Up to S points per pillar, in point order, padded by repeating the pillar's first point.
    slots = int(p["max_points_per_pillar"])
    order = np.flatnonzero(inside)[np.argsort(pillar_of, kind="stable")]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    slot = np.arange(slots)[None, :]
    pillar_points = order[starts[:, None] + np.where(slot < counts[:, None], slot, 0)] if num_pillars else order

    tile = int(p["tile"])
    tiles = active_tiles(grid.occupancy, tile, int(p["mask_dilation"]))
    tile_id = np.full((height // tile, width // tile), -1, dtype=np.int64)
    tile_id[tiles[:, 1], tiles[:, 2]] = np.arange(len(tiles))
    pillar_tile = tile_id[rc[:, 0] // tile, rc[:, 1] // tile]
    pillar_pixel = ((rc[:, 0] % tile) * tile + rc[:, 1] % tile).astype(np.int64)
    tile_pillar = np.full((len(tiles), tile * tile), num_pillars, dtype=np.int64)
    tile_pillar[pillar_tile, pillar_pixel] = np.arange(num_pillars)
    arrays = {
        "point_features": features,
        "point_pillar": np.where(inside, grid.point_pillar, num_pillars).astype(np.int64),
        "pillar_points": pillar_points.astype(np.int64).reshape(num_pillars, slots),
        "pillar_tile": pillar_tile,
        "pillar_pixel": pillar_pixel,
        "tile_pillar": tile_pillar,
        "tile_cell": (tiles[:, 1] * tile * width + tiles[:, 2] * tile).astype(np.int64),
    }
    for dilation in DILATIONS:
        tile_name, pixel_name = gather_names(dilation)
        arrays[tile_name], arrays[pixel_name] = tile_gather(tile_id, tiles, tile, dilation, (height, width))
    return arrays


__all__ = [
    "DEFAULTS",
    "DILATIONS",
    "POINT_FEATURES",
    "active_tiles",
    "gather_names",
    "grid_shape",
    "preprocess_scan",
    "settings",
    "tile_gather",
]
