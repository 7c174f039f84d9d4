"""PointNet shapes, the orthogonality regulariser, and the symmetries a max-pooled network must have."""

from __future__ import annotations

import pytest
import torch

from pointserve.errors import ConfigError
from pointserve.models import get_model, list_models
from pointserve.models.pointnet.network import LAYOUTS, orthogonality_loss

# Required constructor arguments of each registered architecture; a new registration must add its own here.
BUILD_ARGS = {
    "pointnet_cls": {"num_classes": 4},
    "pointnet_seg": {"num_parts": 5},
    "pointnet_partseg": {"num_parts": 6, "num_categories": 3},
}

# The PointNet family's own architectures (list_models() also holds the other families, e.g. the test-only one).
POINTNETS = [name for name in list_models() if name.startswith("pointnet_")]


def _build(name: str, **config) -> torch.nn.Module:
    assert name in BUILD_ARGS, f"add the build arguments of the new model {name!r} to BUILD_ARGS"
    torch.manual_seed(0)
    return get_model(name, **BUILD_ARGS[name], **config).eval()


def _run(model: torch.nn.Module, points: torch.Tensor, category: torch.Tensor | None = None) -> torch.Tensor:
    with torch.no_grad():
        return model(points, category) if getattr(model, "num_categories", 0) else model(points)


@pytest.mark.parametrize("name", POINTNETS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("channels", [3, 6])
@pytest.mark.parametrize("num_points", [1, 37])
def test_output_shapes(name: str, layout: str, channels: int, num_points: int) -> None:
    model = _build(name, in_channels=channels, layout=layout, feature_transform=channels == 6)
    batch = 2
    points = torch.randn(batch, num_points, channels)
    category = torch.tensor([0, 2])
    out = _run(model, points, category)
    if model.task == "classification":
        assert out.shape == (batch, BUILD_ARGS[name]["num_classes"])
    else:
        assert out.shape == (batch, num_points, BUILD_ARGS[name]["num_parts"])
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("feature_transform", [False, True])
def test_forward_with_transform_returns_the_feature_transform(feature_transform: bool) -> None:
    model = _build("pointnet_cls", feature_transform=feature_transform)
    with torch.no_grad():
        logits, transform = model.forward_with_transform(torch.randn(3, 20, 3))
    assert logits.shape == (3, 4)
    if feature_transform:
        assert transform.shape == (3, 64, 64)
    else:
        assert transform is None


def test_part_segmentation_needs_the_category() -> None:
    model = _build("pointnet_partseg")
    with pytest.raises(ValueError, match="category"):
        model(torch.randn(2, 10, 3))


def test_part_segmentation_output_depends_on_the_category() -> None:
    model = _build("pointnet_partseg")
    points = torch.randn(1, 16, 3)
    first = _run(model, points, torch.tensor([0]))
    second = _run(model, points, torch.tensor([1]))
    assert not torch.allclose(first, second)


def test_orthogonality_loss_is_zero_for_orthogonal_matrices() -> None:
    torch.manual_seed(0)
    orthogonal, _ = torch.linalg.qr(torch.randn(4, 64, 64, dtype=torch.float64))
    assert orthogonality_loss(orthogonal).item() == pytest.approx(0.0, abs=1e-10)


def test_orthogonality_loss_is_the_squared_frobenius_distance() -> None:
    # ||I - (2I)(2I)^T||_F^2 = 9 per diagonal entry.
    doubled = 2 * torch.eye(8).expand(3, 8, 8)
    assert orthogonality_loss(doubled).item() == pytest.approx(9 * 8)


@pytest.mark.parametrize("name", POINTNETS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_eval_output_is_invariant_to_point_order(name: str, layout: str) -> None:
    model = _build(name, layout=layout, feature_transform=True)
    points = torch.randn(2, 33, 3)
    category = torch.tensor([1, 0])
    order = torch.randperm(33)
    out = _run(model, points, category)
    shuffled = _run(model, points[:, order], category)
    if model.task == "classification":
        torch.testing.assert_close(shuffled, out, atol=1e-5, rtol=1e-5)
    else:
        torch.testing.assert_close(shuffled, out[:, order], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", POINTNETS)
def test_repeating_points_changes_no_output(name: str) -> None:
    # The service pads clouds by repeating points; that is exact only if a repeat changes no maximum.
    model = _build(name)
    points = torch.randn(1, 25, 3)
    category = torch.tensor([2])
    padded = torch.cat([points, points[:, :7]], dim=1)
    out = _run(model, points, category)
    out_padded = _run(model, padded, category)
    if model.task == "classification":
        torch.testing.assert_close(out_padded, out, atol=1e-5, rtol=1e-5)
    else:
        torch.testing.assert_close(out_padded[:, :25], out, atol=1e-5, rtol=1e-5)


def test_bad_configurations_are_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        get_model("pointnet_nope", num_classes=3)
    with pytest.raises(ConfigError, match="pointnet_cls"):
        get_model("pointnet_cls", num_classes=3, no_such_option=1)
    with pytest.raises(ValueError, match="layout"):
        get_model("pointnet_cls", num_classes=3, layout="tensorflow")
    with pytest.raises(ValueError, match="xyz"):
        get_model("pointnet_cls", num_classes=3, in_channels=2)


def test_segmentation_head_equals_the_convolution_over_the_concatenation():
    """The head computes the per-cloud share of its first layer once per cloud; it must equal the paper's
    1x1 convolution over [global feature repeated per point, point feature, one-hot category]."""
    torch.manual_seed(0)
    model = get_model("pointnet_partseg", num_parts=7, num_categories=3).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    points, category = torch.randn(3, 50, 3), torch.tensor([0, 2, 1])
    with torch.no_grad():
        global_feature, point_feature, _ = model.encoder(points)
        one_hot = torch.nn.functional.one_hot(category, 3).float()
        concat = torch.cat(
            [global_feature.unsqueeze(2).expand(-1, -1, 50), point_feature, one_hot.unsqueeze(2).expand(-1, -1, 50)],
            dim=1,
        )
        expected = model.classifier(model.head(concat)).transpose(1, 2)
        assert torch.allclose(model(points, category), expected, atol=1e-5)
