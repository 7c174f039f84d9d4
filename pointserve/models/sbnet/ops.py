"""SBNet's ops in PyTorch, in a form that exports to plain ONNX: Gather, Conv (VALID) and ScatterND without
reduction. Indices come from :mod:`pointserve.geometry.blocks` and are graph inputs with a dynamic block count.

Layout: activations travel between sparse layers channel-last as *rows*, ``(N * H * W + 1, C)``: pixel
``(n, r, c)`` is row ``(n * H + r) * W + c`` and the last row is zero. That row is the sentinel the gather
reads for pixels outside the image, so a block needs no clipping and no concatenation per layer (a copy of the
whole activation, which would cost as much as the sparse work at high sparsity). Sparse layers never write it:
the scatter indices only name pixels inside the output. :func:`to_rows` / :func:`from_rows` convert from / to
NCHW.

The scatter writes output tiles, which are disjoint, so its indices are unique: ``index_put`` without
accumulation (ONNX ``ScatterND``, reduction none). The residual add reads the base rows first and writes
``base + F(x)`` — a gather and a write, no scatter-add. ``inplace=True`` writes into the base itself, the form
inference uses between layers (no copy of the whole activation); training and export use the functional form.

Shapes:
    - **rows:** :math:`(N H W + 1, C)`, last row zero.
    - **gather:** :math:`(M, B_h, B_w)` int64 in ``[0, N H W]``; **blocks:** :math:`(M, C, B_h, B_w)`.
    - **tiles:** :math:`(M, K, T_h, T_w)`; **scatter, tile_pixels:** :math:`(V,)` int64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DenseForm",
    "SparseBottleneck",
    "SparseConv2d",
    "from_rows",
    "row_batch_norm",
    "sparse_gather",
    "sparse_scatter",
    "to_rows",
]


def to_rows(x: Tensor) -> Tensor:
    """NCHW ``(N, C, H, W)`` -> rows ``(N H W + 1, C)`` with the zero sentinel row last."""
    n, c, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(n * h * w, c)
    return torch.cat([rows, rows.new_zeros(1, c)])


def from_rows(rows: Tensor, batch: int, height: int, width: int) -> Tensor:
    """Rows ``(N H W + 1, C)`` -> NCHW ``(N, C, H, W)`` (the sentinel row dropped)."""
    return rows[:-1].reshape(batch, height, width, rows.shape[1]).permute(0, 3, 1, 2)


def sparse_gather(rows: Tensor, gather: Tensor) -> Tensor:
    """The input blocks: ``(M, C, B_h, B_w)``, zero where a block reaches outside the image."""
    blocks = rows.index_select(0, gather.reshape(-1))  # ONNX Gather (indexing by a 3-D tensor gives GatherND)
    return blocks.reshape(*gather.shape, rows.shape[1]).permute(0, 3, 1, 2)


def sparse_scatter(
    tiles: Tensor,
    scatter: Tensor,
    tile_pixels: Tensor | None,
    base: Tensor,
    *,
    add: bool = False,
    inplace: bool = False,
) -> Tensor:
    """``base`` with each output tile pixel inside the output written (or, ``add``, added) to its row.

    Args:
        tiles: ``(M, K, T_h, T_w)`` VALID-convolution outputs, one per active block.
        scatter: ``(V,)`` destination rows; **tile_pixels:** ``(V,)`` rows of the flattened tiles, or ``None``
            when every tile pixel lies inside the output (an image a multiple of the tile: ``V = M T_h T_w``).
        base: ``(R + 1, K)`` rows: zeros for a plain convolution, the block's input for a residual one.
        add: write ``base + tile`` instead of ``tile``.
        inplace: update ``base`` itself (inference between layers) instead of a copy.
    """
    values = tiles.permute(0, 2, 3, 1).reshape(-1, tiles.shape[1])
    if tile_pixels is not None:
        values = values.index_select(0, tile_pixels)
    if add:
        values = values + base.index_select(0, scatter)
    if inplace:
        return base.index_put_((scatter,), values)
    return base.index_put((scatter,), values)


def _in_image(gather: Tensor, rows: Tensor) -> Tensor:
    """``(M, 1, B_h, B_w)``: 1 where a block pixel lies in the image, 0 on the sentinel."""
    return (gather < rows.shape[0] - 1).unsqueeze(1).to(rows.dtype)


def row_batch_norm(bn: nn.modules.batchnorm._BatchNorm, rows: Tensor) -> Tensor:
    """A 2-D batch norm's statistics and affine applied to ``(R, C)`` rows (training updates them as usual)."""
    if bn.training and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    momentum = 0.1 if bn.momentum is None else bn.momentum
    return F.batch_norm(rows, bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.training, momentum, bn.eps)


def _as_linear(conv: nn.Conv2d) -> Tensor:
    return conv.weight.reshape(conv.out_channels, conv.in_channels)


class SparseConv2d(nn.Module):
    """A stride-1 ``k x k`` convolution run only on active tiles; inactive output pixels are zero (or ``base``).

    The same weights run densely as :meth:`dense` (zero padding ``k // 2``): on active tiles both agree exactly.
    Blocks come from ``block_geometry(in_shape, kernel=k, tile=...)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, bias: bool = True) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=0, bias=bias)

    @property
    def kernel_size(self) -> int:
        return self.conv.kernel_size[0]

    def forward(
        self,
        rows: Tensor,
        gather: Tensor,
        scatter: Tensor,
        tile_pixels: Tensor | None,
        base: Tensor | None = None,
        *,
        inplace: bool = False,
    ) -> Tensor:
        """``base``: the output rows to write into (default zeros, ``(N H W + 1, out_channels)``)."""
        if base is None:
            base = rows.new_zeros(rows.shape[0], self.conv.out_channels)
        tiles = self.conv(sparse_gather(rows, gather))
        return sparse_scatter(tiles, scatter, tile_pixels, base, inplace=inplace)

    def dense(self, x: Tensor) -> Tensor:
        """The dense twin on NCHW ``x``."""
        return F.conv2d(x, self.conv.weight, self.conv.bias, padding=self.kernel_size // 2)


class SparseBottleneck(nn.Module):
    """SBNet's sparse residual block: pre-activation bottleneck C -> K -> K -> C (ResNet v2).

    ``y = x + conv1x1(relu(bn(conv3x3(relu(bn(conv1x1(relu(bn(x)))))))))`` on active tiles, ``y = x`` on
    inactive ones. The 3x3 convolution may be dilated; the receptive field is ``2 * dilation + 1``
    (:attr:`kernel`): blocks from ``block_geometry(in_shape, kernel=block.kernel, tile=...)``. The
    first 1x1 convolution runs over the block's halo too; the 3x3 convolution's input is zeroed outside the
    image, where the dense twin's 3x3 convolution reads zero padding, so both agree exactly (in eval mode; in
    train mode batch statistics differ between the sparse and the dense inputs).
    """

    def __init__(self, channels: int, bottleneck: int, dilation: int = 1) -> None:
        super().__init__()
        if dilation < 1:
            raise ValueError(f"dilation must be at least 1, got {dilation}")
        self.dilation = int(dilation)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, bottleneck, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(bottleneck)
        self.conv2 = nn.Conv2d(bottleneck, bottleneck, 3, padding=0, dilation=self.dilation, bias=False)
        self.bn3 = nn.BatchNorm2d(bottleneck)
        self.conv3 = nn.Conv2d(bottleneck, channels, 1)

    def _branch_head(self, x: Tensor) -> Tensor:
        """The 3x3 convolution's input, ``relu(bn(conv1x1(relu(bn(x)))))``."""
        return F.relu(self.bn2(self.conv1(F.relu(self.bn1(x)))))

    @property
    def kernel(self) -> int:
        """The receptive field, the ``kernel`` of this block's :func:`~pointserve.geometry.blocks.block_geometry`."""
        return 2 * self.dilation + 1

    def _branch_tail(self, h: Tensor, padding: int) -> Tensor:
        conv = F.conv2d(h, self.conv2.weight, padding=padding, dilation=self.dilation)
        return self.conv3(F.relu(self.bn3(conv)))

    def forward(
        self, rows: Tensor, gather: Tensor, scatter: Tensor, tile_pixels: Tensor | None, *, inplace: bool = False
    ) -> Tensor:
        # Zero outside the image: the dense twin's 3x3 convolution reads zero padding there.
        h = self._branch_head(sparse_gather(rows, gather)) * _in_image(gather, rows)
        return sparse_scatter(self._branch_tail(h, 0), scatter, tile_pixels, rows, add=True, inplace=inplace)

    def forward_tiles(self, rows: Tensor, gather: Tensor, tile: int) -> Tensor:
        """The same block on *tile rows*: only the active tiles' pixels, ``(V + 2, C)`` with ``V = M T^2``.

        For a network whose inactive tiles hold zero (a BEV pseudo-image: every occupied cell lies in an
        active tile and inactive tiles pass their zero through), the tiles are the whole state: no scatter, and
        the 1x1 convolutions run once per pixel instead of once per block pixel. Row ``V`` stands for an
        in-image pixel of an inactive tile (x = 0), row ``V + 1`` for a pixel outside the image (the 3x3
        convolution's zero padding); ``gather`` ``(M, B, B)`` indexes these rows with ``B = T + 2 d``.
        Returns the new tile rows, the two sentinel rows zero again.
        """
        head = F.relu(
            row_batch_norm(self.bn2, F.linear(F.relu(row_batch_norm(self.bn1, rows)), _as_linear(self.conv1)))
        )
        # the last row stands for pixels outside the image, where the 3x3 convolution reads zero padding
        head = torch.cat([head[:-1], head.new_zeros(1, head.shape[1])])
        blocks = head.index_select(0, gather.reshape(-1))
        blocks = blocks.reshape(gather.shape[0], gather.shape[1], gather.shape[2], -1).permute(0, 3, 1, 2)
        conv = F.conv2d(blocks, self.conv2.weight, dilation=self.dilation)  # (M, K, T, T)
        tail = F.relu(row_batch_norm(self.bn3, conv.permute(0, 2, 3, 1).reshape(-1, conv.shape[1])))
        tail = F.linear(tail, _as_linear(self.conv3), self.conv3.bias)
        return rows + torch.cat([tail, tail.new_zeros(2, tail.shape[1])])

    def dense(self, x: Tensor, active: Tensor | None = None) -> Tensor:
        """The dense twin on NCHW ``x``; with ``active`` ((N, 1, H, W), 1 on active tiles) the residual is added
        only there, which is what the sparse form computes everywhere."""
        branch = self._branch_tail(self._branch_head(x), self.dilation)
        return x + (branch if active is None else branch * active)


class DenseForm(nn.Module):
    """A sparse op's dense twin as a module of its own, NCHW in and out (to export or time it)."""

    def __init__(self, op: SparseConv2d | SparseBottleneck) -> None:
        super().__init__()
        self.op = op

    def forward(self, x: Tensor) -> Tensor:
        return self.op.dense(x)
