"""SBNet's ops: on active tiles the sparse convolution and residual block equal their dense twins, inactive tiles
pass through, gradients are right, and the exported graph (indices as inputs, a dynamic block count) is Gather /
Conv / ScatterND without reduction and matches PyTorch in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from pointserve.geometry.blocks import block_geometry, sparse_block_inputs
from pointserve.models.sbnet.ops import (
    SparseBottleneck,
    SparseConv2d,
    from_rows,
    sparse_gather,
    sparse_scatter,
    to_rows,
)

BATCH, HEIGHT, WIDTH = 2, 19, 23


def _mask(seed: int = 0, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros((BATCH, height, width), dtype=bool)
    mask[0, : height // 3, : width // 3] = True  # SBNet's top-left rectangle in one image, pixels in the other
    mask[1] = rng.random((height, width)) < 0.01
    mask[1, height - 1, width - 1] = True  # a block at the bottom-right edge, partly outside the image
    return mask


def _inputs(tile: int, seed: int = 0, height: int = HEIGHT, width: int = WIDTH, kernel: int = 3):
    geometry = block_geometry((height, width), kernel=kernel, tile=tile)
    indices = sparse_block_inputs(_mask(seed, height, width), geometry)
    active = np.zeros((BATCH, 1, height, width), dtype=bool)
    for n, bh, bw in indices.blocks:
        active[n, 0, bh * tile : (bh + 1) * tile, bw * tile : (bw + 1) * tile] = True
    tensors = tuple(torch.from_numpy(a) for a in (indices.gather, indices.scatter, indices.tile_pixels))
    return tensors, torch.from_numpy(active), indices


def _randomised_bottleneck(channels=6, bottleneck=4, dtype=torch.float32, dilation=1) -> SparseBottleneck:
    torch.manual_seed(0)
    block = SparseBottleneck(channels, bottleneck, dilation).to(dtype)
    for bn in (block.bn1, block.bn2, block.bn3):  # non-trivial eval-mode statistics
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 1.5)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    return block.eval()


@pytest.mark.parametrize("tile", [3, 5, 8])
def test_sparse_conv_equals_dense_on_active_tiles_and_zero_elsewhere(tile):
    torch.manual_seed(1)
    conv = SparseConv2d(5, 7, 3).eval()
    x = torch.randn(BATCH, 5, HEIGHT, WIDTH)
    (gather, scatter, tile_pixels), active, indices = _inputs(tile)
    assert 0 < indices.num_blocks < BATCH * np.prod(block_geometry((HEIGHT, WIDTH), 3, tile).count)
    with torch.no_grad():
        rows = conv(to_rows(x), gather, scatter, tile_pixels)
        dense = conv.dense(x)
    assert float(rows[-1].abs().max()) == 0.0  # the sentinel row stays zero
    got = from_rows(rows, BATCH, HEIGHT, WIDTH)
    on = active.expand_as(got)
    assert float((got[on] - dense[on]).abs().max()) <= 1e-5
    assert float(got[~on].abs().max()) == 0.0


@pytest.mark.parametrize("tile, dilation", [(4, 1), (7, 1), (4, 2)])
def test_sparse_bottleneck_equals_dense_on_active_tiles_and_passes_the_rest_through(tile, dilation):
    block = _randomised_bottleneck(dilation=dilation)
    x = torch.randn(BATCH, 6, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(2))
    (gather, scatter, tile_pixels), active, _ = _inputs(tile, kernel=block.kernel)
    with torch.no_grad():
        rows = to_rows(x)
        got = from_rows(block(rows, gather, scatter, tile_pixels), BATCH, HEIGHT, WIDTH)
        dense = block.dense(x)
        inplace_rows = rows.clone()
        block(inplace_rows, gather, scatter, tile_pixels, inplace=True)
    on = active.expand_as(got)
    assert float((got[on] - dense[on]).abs().max()) <= 1e-5
    assert torch.equal(got[~on], x[~on])  # inactive tiles: the input, bit for bit
    assert torch.equal(from_rows(inplace_rows, BATCH, HEIGHT, WIDTH), got)  # the serving form, same values
    assert torch.equal(rows, to_rows(x))  # the functional form leaves its input alone
    with torch.no_grad():  # the masked dense twin: the sparse semantics computed densely, everywhere equal
        masked = block.dense(x, active.to(x.dtype))
    assert float((got - masked).abs().max()) <= 1e-5


def test_bottleneck_is_exact_at_the_image_border():
    # A mask active everywhere: every tile is active, so sparse must equal dense on the whole image, border
    # included, where the 3x3 convolution's input is the dense twin's zero padding.
    block = _randomised_bottleneck()
    geometry = block_geometry((HEIGHT, WIDTH), kernel=3, tile=6)
    indices = sparse_block_inputs(np.ones((1, HEIGHT, WIDTH), bool), geometry)
    x = torch.randn(1, 6, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(3))
    args = [torch.from_numpy(a) for a in (indices.gather, indices.scatter, indices.tile_pixels)]
    with torch.no_grad():
        got = from_rows(block(to_rows(x), *args), 1, HEIGHT, WIDTH)
        assert float((got - block.dense(x)).abs().max()) <= 1e-5


SMALL = 7, 8  # gradcheck's numerical Jacobian costs two forwards per input element


def test_gather_and_scatter_gradients():
    torch.manual_seed(4)
    (gather, scatter, tile_pixels), _, indices = _inputs(4, 0, *SMALL)
    rows = torch.randn(BATCH * SMALL[0] * SMALL[1] + 1, 3, dtype=torch.float64)
    rows.data[-1] = 0
    rows.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda r: sparse_gather(r, gather), (rows,))
    tiles = torch.randn(indices.num_blocks, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    for add in (False, True):
        assert torch.autograd.gradcheck(
            lambda t, b, add=add: sparse_scatter(t, scatter, tile_pixels, b, add=add), (tiles, rows)
        )


def test_sparse_conv_and_bottleneck_gradients():
    (gather, scatter, tile_pixels), _, _ = _inputs(3, 0, *SMALL)
    torch.manual_seed(5)
    conv = SparseConv2d(2, 3, 3).double()
    block = _randomised_bottleneck(3, 2, dtype=torch.float64)
    call = torch.func.functional_call
    for module, channels in ((conv, 2), (block, 3)):
        names = [name for name, _ in module.named_parameters()]
        params = tuple(p.detach().clone().requires_grad_(True) for p in module.parameters())
        rows = to_rows(torch.randn(BATCH, channels, *SMALL, dtype=torch.float64)).requires_grad_(True)

        def forward(r, *p, module=module, names=names):
            return call(module, dict(zip(names, p, strict=True)), (r, gather, scatter, tile_pixels))

        assert torch.autograd.gradcheck(forward, (rows, *params))


class _Exported(torch.nn.Module):
    """Two sparse layers chained the way a network runs them: conv into a zero base, then a residual block."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.conv = SparseConv2d(4, 6, 3)
        self.block = _randomised_bottleneck(6, 3)

    def forward(self, rows, gather, scatter, tile_pixels):
        hidden = self.conv(rows, gather, scatter, tile_pixels)
        return self.block(hidden, gather, scatter, tile_pixels)


def _export(tmp_path) -> tuple[str, _Exported]:
    module = _Exported().eval()
    x = torch.randn(BATCH, 4, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(7))
    (gather, scatter, tile_pixels), _, _ = _inputs(5)
    rows_dim, blocks_dim, pixels_dim = (torch.export.Dim(n, min=2) for n in ("rows", "blocks", "pixels"))
    path = str(tmp_path / "sbnet_ops.onnx")
    torch.onnx.export(
        module,
        (to_rows(x), gather, scatter, tile_pixels),
        path,
        input_names=["rows", "gather", "scatter", "tile_pixels"],
        output_names=["out"],
        dynamic_shapes={
            "rows": {0: rows_dim},
            "gather": {0: blocks_dim},
            "scatter": {0: pixels_dim},
            "tile_pixels": {0: pixels_dim},
        },
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    return path, module


def test_exported_graph_uses_plain_ops_and_matches_pytorch(tmp_path):
    path, module = _export(tmp_path)
    graph = onnx.load(path).graph
    ops = {node.op_type for node in graph.node}
    assert {"Gather", "Conv", "ScatterND"} <= ops
    assert not ops & {"ScatterElements", "GatherND", "Loop", "If"}
    for node in graph.node:
        assert node.domain in ("", "ai.onnx"), node
        if node.op_type == "ScatterND":
            reduction = [a.s for a in node.attribute if a.name == "reduction"]
            assert reduction in ([], [b"none"]), f"{node.name} has reduction {reduction}"
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    # other masks than the one exported with: the block count is an input's dynamic dimension, zero included
    for seed, tile in ((1, 5), (2, 5)):
        (gather, scatter, tile_pixels), _, indices = _inputs(tile, seed)
        x = torch.randn(BATCH, 4, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            expected = module(to_rows(x), gather, scatter, tile_pixels).numpy()
        feed = {"rows": to_rows(x).numpy(), "gather": gather.numpy(), "scatter": scatter.numpy()}
        got = session.run(None, {**feed, "tile_pixels": tile_pixels.numpy()})[0]
        assert np.abs(got - expected).max() <= 1e-5
    empty = np.zeros((0, 7, 7), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    x = to_rows(torch.randn(1, 4, HEIGHT, WIDTH)).numpy()
    got = session.run(None, {"rows": x, "gather": empty[0], "scatter": empty[1], "tile_pixels": empty[2]})[0]
    assert got.shape == (x.shape[0], 6) and not got.any()  # no active block: all zero, no error
