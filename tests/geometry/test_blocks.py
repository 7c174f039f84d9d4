"""SBNet's host side: block geometry from the reference's formulas, reduce_mask against a brute-force pooling of
every block window, and gather / scatter indices that address exactly the block and tile pixels."""

from __future__ import annotations

import numpy as np
import pytest

from pointserve.errors import InputError
from pointserve.geometry.blocks import block_geometry, block_indices, reduce_mask, sparse_block_inputs


def test_geometry_of_a_stride_one_3x3_layer():
    g = block_geometry((200, 350), kernel=3, tile=14)
    assert g.out_shape == (200, 350)
    assert g.block == (16, 16)  # tile + the 2-pixel halo: SBNet's BH for a 3x3 VALID convolution
    assert g.block_stride == (14, 14)
    assert g.offset == (-1, -1)  # SAME padding of a 3x3
    assert g.count == (15, 25)  # ceil(200 / 14), ceil(350 / 14)
    assert g.halo == (2, 2)


def test_geometry_with_stride_and_rectangular_tiles():
    g = block_geometry((37, 50), kernel=(3, 5), tile=(4, 6), stride=2)
    assert g.out_shape == (19, 25)  # (37 + 2 - 3) // 2 + 1, (50 + 4 - 5) // 2 + 1
    assert g.block == (3 * 2 + 3, 5 * 2 + 5)
    assert g.block_stride == (8, 12)
    assert g.offset == (-1, -2)
    assert g.count == (5, 5)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel=2, tile=4),
        dict(kernel=3, tile=0),
        dict(kernel=3, tile=4, stride=(1, 2, 3)),
        dict(kernel=3, tile=2, stride=0),
    ],
)
def test_bad_geometry_is_refused(kwargs):
    with pytest.raises(InputError):
        block_geometry((3, 3), **kwargs)


def _window_values(mask: np.ndarray, g, n: int, bh: int, bw: int) -> np.ndarray:
    r0 = g.offset[0] + g.block_stride[0] * bh
    c0 = g.offset[1] + g.block_stride[1] * bw
    r1, c1 = r0 + g.block[0], c0 + g.block[1]
    return mask[n, max(r0, 0) : max(r1, 0), max(c0, 0) : max(c1, 0)]


@pytest.mark.parametrize("avgpool", [False, True])
@pytest.mark.parametrize("tol", [0.0, 0.1])
def test_reduce_mask_equals_brute_force_pooling(avgpool, tol):
    rng = np.random.default_rng(3)
    # patchy: dense in places (blocks over tol on average), empty in others
    patches = np.kron(rng.random((2, 7, 10)) < 0.4, np.ones((6, 6)))[:, :41, :57]
    mask = (patches * (rng.random((2, 41, 57)) < 0.5) * rng.random((2, 41, 57))).astype(np.float32)
    g = block_geometry(mask.shape[1:], kernel=3, tile=(5, 7))
    expected = []
    for n in range(2):
        for bh in range(g.count[0]):
            for bw in range(g.count[1]):
                window = _window_values(mask, g, n, bh, bw)
                value = window.sum() / (g.block[0] * g.block[1]) if avgpool else window.max(initial=0.0)
                if value > tol:
                    expected.append((n, bh, bw))
    got = reduce_mask(mask, g, tol=tol, avgpool=avgpool)
    assert got.dtype == np.int64 and got.shape[1] == 3
    assert [tuple(row) for row in got] == expected  # the same blocks, in raster order
    assert 0 < len(got) < 2 * g.count[0] * g.count[1]  # neither all nor none: the test tells blocks apart


def test_reduce_mask_takes_sbnet_layouts_and_refuses_others():
    g = block_geometry((10, 12), kernel=3, tile=4)
    mask = np.zeros((10, 12), dtype=bool)
    mask[9, 11] = True  # the last pixel: only the last block (and not a wrapped-around one) sees it
    assert reduce_mask(mask, g).tolist() == [[0, 2, 2]]
    assert reduce_mask(mask[None, ..., None], g).tolist() == [[0, 2, 2]]  # SBNet's (N, H, W, 1)
    assert reduce_mask(np.zeros((1, 10, 12)), g).shape == (0, 3)
    with pytest.raises(InputError, match="mask must be"):
        reduce_mask(np.zeros((1, 10, 11)), g)
    with pytest.raises(InputError, match="boolean or numeric"):
        reduce_mask(np.zeros((10, 12), dtype=object), g)


def test_indices_address_block_and_tile_pixels():
    rng = np.random.default_rng(0)
    batch, height, width = 2, 13, 17
    g = block_geometry((height, width), kernel=3, tile=(4, 5))
    mask = rng.random((batch, height, width)) < 0.1
    indices = sparse_block_inputs(mask, g)
    sentinel = batch * height * width
    image = np.arange(sentinel).reshape(batch, height, width)
    padded = np.pad(image, ((0, 0), (1, g.block[0]), (1, g.block[1])), constant_values=sentinel)
    assert indices.gather.shape == (indices.num_blocks, *g.block)
    covered = np.zeros(batch * g.out_shape[0] * g.out_shape[1], dtype=int)
    for m, (n, bh, bw) in enumerate(indices.blocks):
        r0, c0 = g.block_stride[0] * bh, g.block_stride[1] * bw  # in the padded image (offset -1 undone)
        np.testing.assert_array_equal(indices.gather[m], padded[n, r0 : r0 + g.block[0], c0 : c0 + g.block[1]])
    # every scattered pixel is inside the output, written once, and comes from the right tile position
    assert len(np.unique(indices.scatter)) == len(indices.scatter)
    np.add.at(covered, indices.scatter, 1)
    per_tile = g.tile[0] * g.tile[1]
    for row, pixel in zip(indices.scatter, indices.tile_pixels, strict=True):
        m, within = divmod(int(pixel), per_tile)
        n, bh, bw = indices.blocks[m]
        r, c = divmod(within, g.tile[1])
        assert row == (n * g.out_shape[0] + bh * g.tile[0] + r) * g.out_shape[1] + bw * g.tile[1] + c
    assert covered.max() == 1


def test_out_of_range_blocks_are_refused():
    g = block_geometry((8, 8), kernel=3, tile=4)
    with pytest.raises(InputError, match="out of range"):
        block_indices(np.array([[0, 2, 0]]), g, batch=1)
    with pytest.raises(InputError, match="out of range"):
        block_indices(np.array([[1, 0, 0]]), g, batch=1)
