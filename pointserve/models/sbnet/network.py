"""The BEV segmentation network: pillars -> a PointNet per pillar -> a BEV pseudo-image -> SBNet sparse residual
blocks -> per-pillar context mapped back to every point, refined per point.

The pseudo-image lives as *tile rows* (:mod:`pointserve.models.sbnet.bev_inputs`): only the active tiles'
pixels, gathered into blocks for each 3x3 convolution; the pillars are placed in them by a gather too. The
graph is Gather, Gemm / Conv, ReduceMax and elementwise ops, no Scatter at all, so TensorRT and ONNX Runtime
take it.
``sparse=False`` runs the same weights as the dense twin, for comparison: the backbone over the whole H x W
grid of every scan, the residual added on the active tiles only (what the sparse blocks compute there).

Shapes (a batch of B scans, n points, p pillars and M active tiles in all; V = M T^2):
    point_features (n, 9), point_pillar (n,), pillar_points (p, S), pillar_tile / pillar_pixel (p,),
    tile_pillar (M, T^2),
    gather_tile_d{1,2} / gather_pixel_d{1,2} (M, T + 2d, T + 2d), tile_cell (M,), segment_start (B,)
    -> logits (n, classes)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pointserve.models.sbnet.bev_inputs import POINT_FEATURES
from pointserve.models.sbnet.ops import SparseBottleneck, from_rows


def _mlp(widths: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU()]
    return nn.Sequential(*layers)


class BevSegmenter(nn.Module):
    """A label per point of a LiDAR scan from a sparse BEV backbone.

    Args:
        num_classes: semantic classes.
        grid_shape: the BEV grid ``(H, W)``; **tile:** the active-tile size (H and W are multiples of it).
        dilations: one sparse bottleneck per entry, its 3x3 convolution dilated so (1 or 2).
        point_width: the per-point / per-pillar PointNet's width; **channels / bottleneck:** the backbone's.
    """

    def __init__(
        self,
        num_classes: int,
        grid_shape: Sequence[int],
        tile: int = 8,
        dilations: Sequence[int] = (1, 1, 2, 1),
        point_width: int = 32,
        channels: int = 32,
        bottleneck: int = 16,
        head_width: int = 64,
        in_features: int = POINT_FEATURES,
        sparse: bool = True,
    ) -> None:
        super().__init__()
        self.grid_shape = (int(grid_shape[0]), int(grid_shape[1]))
        self.tile = int(tile)
        self.sparse = sparse
        self.point_net = _mlp([in_features, point_width, point_width])
        self.pillar_net = _mlp([point_width, channels])
        self.blocks = nn.ModuleList(SparseBottleneck(channels, bottleneck, d) for d in dilations)
        self.context_norm = nn.BatchNorm1d(channels)  # the backbone is pre-activation: close it
        self.head = nn.Sequential(*_mlp([point_width + channels, head_width]), nn.Linear(head_width, num_classes))

    def forward(
        self,
        point_features: Tensor,
        point_pillar: Tensor,
        pillar_points: Tensor,
        pillar_tile: Tensor,
        pillar_pixel: Tensor,
        tile_pillar: Tensor,
        gather_tile_d1: Tensor,
        gather_pixel_d1: Tensor,
        gather_tile_d2: Tensor,
        gather_pixel_d2: Tensor,
        tile_cell: Tensor,
        segment_start: Tensor,
    ) -> Tensor:
        area = self.tile * self.tile
        per_point = self.point_net(point_features)
        pillars = per_point.index_select(0, pillar_points.reshape(-1))
        pillars = pillars.reshape(pillar_points.shape[0], pillar_points.shape[1], -1).amax(dim=1)
        pillars = self.pillar_net(pillars)
        pillar_row = pillar_tile * area + pillar_pixel
        empty = pillars.new_zeros(3, pillars.shape[1])  # row p: no pillar; then the two sentinel rows
        rows = torch.cat([torch.cat([pillars, empty[:1]]).index_select(0, tile_pillar.reshape(-1)), empty[1:]])
        if self.sparse:
            gathers = {1: gather_tile_d1 * area + gather_pixel_d1, 2: gather_tile_d2 * area + gather_pixel_d2}
            for block in self.blocks:
                rows = block.forward_tiles(rows, gathers[block.dilation], self.tile)
        else:
            rows = self._dense_backbone(rows, tile_cell, segment_start.shape[0])
        context = torch.relu(self.context_norm(rows.index_select(0, pillar_row)))
        context = torch.cat([context, context.new_zeros(1, context.shape[1])])  # points outside the grid: none
        return self.head(torch.cat([per_point, context.index_select(0, point_pillar)], dim=1))

    def tile_cells(self, tile_cell: Tensor) -> Tensor:
        """``(V,)`` the grid cell of every tile row (cells of the batch's ``B H W`` grid)."""
        width = self.grid_shape[1]
        within = torch.arange(self.tile, device=tile_cell.device)
        offsets = (within[:, None] * width + within[None, :]).reshape(-1)
        return (tile_cell[:, None] + offsets[None, :]).reshape(-1)

    def _dense_backbone(self, rows: Tensor, tile_cell: Tensor, batch: int) -> Tensor:
        """Tile rows -> the whole grid -> the dense blocks -> tile rows again (the dense twin)."""
        height, width = self.grid_shape
        cells = self.tile_cells(tile_cell)
        tiles = rows[: cells.shape[0]]
        grid = rows.new_zeros(batch * height * width + 1, rows.shape[1]).index_put((cells,), tiles)
        active = rows.new_zeros(batch * height * width + 1, 1).index_put((cells,), rows.new_ones(cells.shape[0], 1))
        x, mask = from_rows(grid, batch, height, width), from_rows(active, batch, height, width)
        for block in self.blocks:
            x = block.dense(x, mask)
        flat = x.permute(0, 2, 3, 1).reshape(batch * height * width, -1)
        return torch.cat([flat.index_select(0, cells), rows.new_zeros(2, rows.shape[1])])


__all__ = ["BevSegmenter"]
