"""pcn's continuous convolution: every implementation and order equals a loop over edges, gradients are right,
and the export form's ONNX graph is Gather + MatMul only and matches PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pointserve.models.pcn.conv import (
    IMPLEMENTATIONS,
    ORDERS,
    ContinuousConv,
    Neighbourhood,
    continuous_conv,
    edge_features,
    num_edge_features,
    polynomial_features,
    resolve_order,
)

N_IN, N_OUT, K, T = 40, 25, 7, 10


def _neighbourhood(dtype=torch.float64, seed: int = 0) -> tuple[Neighbourhood, torch.Tensor, torch.Tensor]:
    """Random clouds and a padded neighbour list with sentinel slots and one empty row."""
    g = torch.Generator().manual_seed(seed)
    in_coords = torch.rand(N_IN, 3, generator=g, dtype=dtype)
    out_coords = torch.rand(N_OUT, 3, generator=g, dtype=dtype)
    neighbors = torch.randint(0, N_IN + 1, (N_OUT, K), generator=g)
    neighbors[3] = N_IN  # a row without any neighbour
    features = edge_features(in_coords, out_coords, neighbors, radius=0.6)
    return Neighbourhood(neighbors, features, N_IN), in_coords, out_coords


def _brute_force(x: torch.Tensor | None, nb: Neighbourhood, kernel: torch.Tensor) -> torch.Tensor:
    """out_i = sum over real edges (i, j) and terms t of e_ijt * (x_j @ Theta_t), one edge at a time."""
    out = torch.zeros(nb.num_outputs, kernel.shape[-1], dtype=kernel.dtype)
    for i in range(nb.num_outputs):
        for slot in range(nb.neighbors.shape[1]):
            j = int(nb.neighbors[i, slot])
            if j == nb.num_inputs:
                continue
            for t in range(kernel.shape[0]):
                term = kernel[t] if x is None else x[j] @ kernel[t]
                out[i] += nb.features[i, slot, t] * term
    return out


def test_edge_features_are_normalised_hat_weighted_polynomials():
    nb, in_coords, out_coords = _neighbourhood()
    i, slot = 0, int(torch.nonzero(nb.neighbors[0] < N_IN)[0])
    j = int(nb.neighbors[i, slot])
    rel = (in_coords[j] - out_coords[i]) / 0.6
    real = nb.neighbors[i] < N_IN
    dists = ((in_coords[nb.neighbors[i][real]] - out_coords[i]) / 0.6).norm(dim=1)
    weight = torch.relu(1 - rel.norm()) / torch.relu(1 - dists).sum()
    x, y, z = rel.tolist()
    expected = weight * torch.tensor([1, x, y, z, x * x, y * y, z * z, x * y, x * z, y * z], dtype=torch.float64)
    assert torch.allclose(nb.features[i, slot], expected, atol=1e-12)
    assert torch.all(nb.features[~(nb.neighbors < N_IN)] == 0), "padding slots carry no weight"
    assert torch.all(nb.features[3] == 0) and torch.isfinite(nb.features).all(), "an empty row is zero, not NaN"
    assert [num_edge_features(d) for d in (0, 1, 2)] == [1, 4, 10]
    assert polynomial_features(torch.zeros(2, 3), 1).shape == (2, 4)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("order", ORDERS)
def test_every_form_equals_the_loop_over_edges(implementation, order):
    nb, _, _ = _neighbourhood()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N_IN, 5, generator=g, dtype=torch.float64)
    kernel = torch.randn(T, 5, 6, generator=g, dtype=torch.float64)
    expected = _brute_force(x, nb, kernel)
    got = continuous_conv(x, nb, kernel, order, implementation)
    assert (got - expected).abs().max() <= 1e-5
    # float32, as trained and served
    nb32 = Neighbourhood(nb.neighbors, nb.features.float(), N_IN)
    got32 = continuous_conv(x.float(), nb32, kernel.float(), order, implementation)
    assert (got32.double() - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_the_featureless_first_layer_equals_the_loop(implementation):
    nb, _, _ = _neighbourhood()
    kernel = torch.randn(T, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = continuous_conv(None, nb, kernel, "features_first", implementation)
    assert (got - _brute_force(None, nb, kernel)).abs().max() <= 1e-5


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("order", ORDERS)
def test_gradients_pass_gradcheck(implementation, order):
    nb, _, _ = _neighbourhood()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(N_IN, 3, generator=g, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(T, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: continuous_conv(a, nb, b, order, implementation), (x, kernel))


def test_the_reference_rule_picks_the_order_and_can_be_overridden():
    assert resolve_order(64, 64, None) == "transform_first"
    assert resolve_order(32, 64, None) == "features_first"
    assert resolve_order(64, 32, None) == "transform_first"
    assert resolve_order(64, 32, "features_first") == "features_first"
    assert ContinuousConv(16, 16).order == "transform_first"
    assert ContinuousConv(None, 16).order == "features_first"
    with pytest.raises(ValueError, match="order"):
        resolve_order(4, 4, "sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="featureless"):
        ContinuousConv(None, 4)(torch.zeros(N_IN, 3), _neighbourhood(torch.float32)[0])


class _ExportedConv(torch.nn.Module):
    """The layer as an exported graph sees it: coordinates and neighbour lists in, features out."""

    def __init__(self, order: str) -> None:
        super().__init__()
        self.conv = ContinuousConv(5, 6, T, order=order)  # implementation chosen by the exporter: gather

    def forward(self, in_coords, out_coords, neighbors, x):
        nb = Neighbourhood(neighbors, edge_features(in_coords, out_coords, neighbors, 0.6), in_coords.shape[0])
        return self.conv(x, nb)


@pytest.mark.parametrize("order", ORDERS)
def test_the_export_form_has_no_scatter_and_matches_pytorch(order, tmp_path):
    import onnx
    import onnxruntime as ort

    torch.manual_seed(0)
    module = _ExportedConv(order).eval()
    nb, in_coords, out_coords = _neighbourhood(torch.float32)
    x = torch.randn(N_IN, 5)
    args = (in_coords, out_coords, nb.neighbors, x)
    n_in, n_out = torch.export.Dim("n_in"), torch.export.Dim("n_out")
    shapes = {"in_coords": {0: n_in}, "out_coords": {0: n_out}, "neighbors": {0: n_out}, "x": {0: n_in}}
    path = tmp_path / "conv.onnx"
    torch.onnx.export(module, args, str(path), dynamo=True, dynamic_shapes=shapes, verbose=False)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert not ops & {"ScatterND", "ScatterElements", "Scatter", "Einsum"}, ops
    assert "Gather" in ops and "MatMul" in ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feeds = dict(zip(names, [a.numpy() for a in args], strict=True))
    got = session.run(None, feeds)[0]
    with torch.no_grad():
        expected = module(*args).numpy()
    assert np.abs(got - expected).max() <= 1e-5
