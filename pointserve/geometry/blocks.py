"""SBNet's host side: block geometry, ``reduce_mask`` and the gather / scatter indices (numpy only).

SBNet (Ren et al., CVPR 2018) runs a convolution only on the blocks of an image a mask marks active. A layer's
output is cut into disjoint tiles of ``tile`` pixels; tile ``(bh, bw)`` needs the input block that a VALID
convolution over it reads: ``block = (tile - 1) * stride + kernel`` pixels, starting at ``offset + block_stride
* (bh, bw)`` with ``block_stride = tile * stride`` and ``offset = -pad`` (the dense layer's zero padding,
``kernel // 2``). Neighbouring input blocks overlap by the ``kernel - 1`` halo, output tiles do not, and on an
active tile the VALID convolution of the gathered block equals the dense convolution exactly. For a residual
block ``kernel`` is its receptive field, ``1 + sum(k_i - 1)`` over its convolutions.

:func:`reduce_mask` lists the active blocks in raster order (SBNet's CPU order, so the indices are deterministic),
and :func:`block_indices` turns them into the flat row indices an exported graph takes as inputs:
activations travel channel-last as ``(N * H * W, C)`` rows, the gather reads rows of that matrix with one extra
zero row (the sentinel ``N * H * W``) for pixels outside the image, and the scatter writes each output tile
pixel that lies inside the output to its own row: unique indices, so ``ScatterND`` needs no reduction.

Shapes:
    - **mask:** :math:`(N, H, W)` (or :math:`(H, W)`) bool or float, at the layer's input resolution.
    - **blocks:** :math:`(M, 3)` int64 active ``(n, bh, bw)`` in raster order.
    - **gather:** :math:`(M, B_h, B_w)` int64 rows of the :math:`(N H W + 1, C)` input (last row zero).
    - **scatter:** :math:`(V,)` int64 rows of the :math:`(N H_o W_o, K)` output; **tile_pixels:**
      :math:`(V,)` int64 rows of the :math:`(M\\, T_h T_w, K)` flattened tiles, aligned with ``scatter``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pointserve.errors import InputError

__all__ = ["BlockGeometry", "BlockIndices", "block_geometry", "block_indices", "reduce_mask", "sparse_block_inputs"]


def _pair(name: str, value: int | Sequence[int]) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in pair):
        raise InputError(f"{name} must be a positive integer or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


@dataclass(frozen=True)
class BlockGeometry:
    """Where the blocks of one sparse layer lie. Every pair is (rows, columns).

    Attributes:
        in_shape: the layer's input ``(H, W)``; **out_shape:** its output ``(H_o, W_o)`` (the dense layer's,
            padding ``kernel // 2``).
        kernel, stride: the receptive field and stride of the whole sparse op.
        tile: output tile size; **block:** input block size ``(tile - 1) * stride + kernel``.
        block_stride: ``tile * stride``; **offset:** ``-pad``, the first block's top-left input pixel.
        count: blocks per axis, ``ceil(out / tile)``.
    """

    in_shape: tuple[int, int]
    out_shape: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    tile: tuple[int, int]
    block: tuple[int, int]
    block_stride: tuple[int, int]
    offset: tuple[int, int]
    count: tuple[int, int]

    @property
    def halo(self) -> tuple[int, int]:
        """Pixels a block reads beyond its tile's own footprint (``kernel - stride``)."""
        return self.block[0] - self.block_stride[0], self.block[1] - self.block_stride[1]


def block_geometry(
    in_shape: Sequence[int], kernel: int | Sequence[int], tile: int | Sequence[int], stride: int | Sequence[int] = 1
) -> BlockGeometry:
    """The blocks of a layer with an odd ``kernel`` (zero padding ``kernel // 2``, as the dense twin pads).

    Args:
        in_shape: input ``(H, W)``.
        kernel: receptive field (odd), e.g. 3 for a 3x3 convolution or a bottleneck with one 3x3.
        tile: output tile size; SBNet's benchmark sweeps square sizes.
        stride: the layer's stride.
    """
    height, width = _pair("in_shape", tuple(in_shape))
    kernel_hw, stride_hw, tile_hw = _pair("kernel", kernel), _pair("stride", stride), _pair("tile", tile)
    if kernel_hw[0] % 2 == 0 or kernel_hw[1] % 2 == 0:
        raise InputError(f"kernel must be odd (SAME padding kernel // 2), got {kernel_hw}")
    pad = (kernel_hw[0] // 2, kernel_hw[1] // 2)
    out_shape = tuple(
        (n + 2 * p - k) // s + 1 for n, p, k, s in zip((height, width), pad, kernel_hw, stride_hw, strict=True)
    )
    if min(out_shape) < 1:
        raise InputError(f"input {height} x {width} is smaller than the kernel {kernel_hw}")
    block = tuple((t - 1) * s + k for t, s, k in zip(tile_hw, stride_hw, kernel_hw, strict=True))
    return BlockGeometry(
        in_shape=(height, width),
        out_shape=out_shape,
        kernel=kernel_hw,
        stride=stride_hw,
        tile=tile_hw,
        block=block,
        block_stride=(tile_hw[0] * stride_hw[0], tile_hw[1] * stride_hw[1]),
        offset=(-pad[0], -pad[1]),
        count=(math.ceil(out_shape[0] / tile_hw[0]), math.ceil(out_shape[1] / tile_hw[1])),
    )


def _batched_mask(mask: np.ndarray, geometry: BlockGeometry) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 4 and arr.shape[-1] == 1:  # SBNet's (N, H, W, 1)
        arr = arr[..., 0]
    if arr.ndim != 3 or arr.shape[1:] != geometry.in_shape:
        raise InputError(f"mask must be (N, {geometry.in_shape[0]}, {geometry.in_shape[1]}), got {np.shape(mask)}")
    if arr.dtype.kind not in "biuf":
        raise InputError(f"mask must be boolean or numeric, got {arr.dtype}")
    return arr


def reduce_mask(mask: np.ndarray, geometry: BlockGeometry, *, tol: float = 0.0, avgpool: bool = False) -> np.ndarray:
    """The active blocks of ``mask``, SBNet's ``reduce_mask`` on the CPU.

    A block is active when the maximum of the mask over its input window (clipped to the image) exceeds ``tol``,
    or with ``avgpool`` when the window's sum divided by the full block area exceeds ``tol``. One integral image
    per image gives every window's sum in O(H W), however much the windows overlap.

    Returns:
        ``(M, 3)`` int64 ``(n, bh, bw)`` in raster order.
    """
    arr = _batched_mask(mask, geometry)
    values = arr.astype(np.float64) if avgpool else (arr > tol).astype(np.int32)
    (rows, cols), (off_r, off_c) = geometry.count, geometry.offset
    (size_r, size_c), (step_r, step_c) = geometry.block, geometry.block_stride
    # Pad so that every window lies inside: -offset before, enough after for the last block.
    after_r = max(0, off_r + step_r * (rows - 1) + size_r - arr.shape[1])
    after_c = max(0, off_c + step_c * (cols - 1) + size_c - arr.shape[2])
    padded = np.pad(values, ((0, 0), (-off_r, after_r), (-off_c, after_c)))
    integral = np.zeros((padded.shape[0], padded.shape[1] + 1, padded.shape[2] + 1), dtype=padded.dtype)
    np.cumsum(np.cumsum(padded, axis=1), axis=2, out=integral[:, 1:, 1:])
    r0 = step_r * np.arange(rows)
    c0 = step_c * np.arange(cols)
    r1, c1 = r0 + size_r, c0 + size_c
    sums = (
        integral[:, r1[:, None], c1[None, :]]
        - integral[:, r0[:, None], c1[None, :]]
        - integral[:, r1[:, None], c0[None, :]]
        + integral[:, r0[:, None], c0[None, :]]
    )
    active = sums / (size_r * size_c) > tol if avgpool else sums > 0
    return np.argwhere(active).astype(np.int64).reshape(-1, 3)


@dataclass(frozen=True, eq=False)
class BlockIndices:
    """The graph inputs of one sparse layer (see the module's Shapes)."""

    blocks: np.ndarray
    gather: np.ndarray
    scatter: np.ndarray
    tile_pixels: np.ndarray

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)


def block_indices(blocks: np.ndarray, geometry: BlockGeometry, batch: int) -> BlockIndices:
    """Flat gather and scatter rows for ``blocks`` (from :func:`reduce_mask`) of a batch of ``batch`` images."""
    blocks = np.asarray(blocks, dtype=np.int64).reshape(-1, 3)
    if len(blocks) and not (
        (blocks >= 0).all()
        and (blocks[:, 0] < batch).all()
        and (blocks[:, 1] < geometry.count[0]).all()
        and (blocks[:, 2] < geometry.count[1]).all()
    ):
        raise InputError(f"block indices out of range for {batch} images of {geometry.count} blocks")
    n, bh, bw = blocks[:, 0, None, None], blocks[:, 1, None, None], blocks[:, 2, None, None]
    height, width = geometry.in_shape
    rows = geometry.offset[0] + geometry.block_stride[0] * bh + np.arange(geometry.block[0])[None, :, None]
    cols = geometry.offset[1] + geometry.block_stride[1] * bw + np.arange(geometry.block[1])[None, None, :]
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    gather = np.where(inside, (n * height + rows) * width + cols, batch * height * width)

    out_h, out_w = geometry.out_shape
    out_rows = geometry.tile[0] * bh + np.arange(geometry.tile[0])[None, :, None]
    out_cols = geometry.tile[1] * bw + np.arange(geometry.tile[1])[None, None, :]
    out_inside = ((out_rows < out_h) & (out_cols < out_w)).reshape(-1)
    scatter = np.broadcast_to((n * out_h + out_rows) * out_w + out_cols, (len(blocks), *geometry.tile)).reshape(-1)
    tile_pixels = np.flatnonzero(out_inside)
    return BlockIndices(
        blocks=blocks,
        gather=np.ascontiguousarray(gather, dtype=np.int64),
        scatter=np.ascontiguousarray(scatter[tile_pixels], dtype=np.int64),
        tile_pixels=tile_pixels.astype(np.int64),
    )


def sparse_block_inputs(
    mask: np.ndarray, geometry: BlockGeometry, *, tol: float = 0.0, avgpool: bool = False
) -> BlockIndices:
    """:func:`reduce_mask` then :func:`block_indices`: everything a sparse layer needs from its mask."""
    batch = _batched_mask(mask, geometry).shape[0]
    return block_indices(reduce_mask(mask, geometry, tol=tol, avgpool=avgpool), geometry, batch)
