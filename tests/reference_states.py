"""Random state dicts laid out as other projects save them, for the checkpoint-import tests: each entry is
(key, shape, role), and a role says how a trained tensor of that kind looks (batch-norm statistics positive and
O(1), biases small), so a random state dict exercises the import like a real one."""

from __future__ import annotations

import torch

Layout = list[tuple[str, tuple[int, ...], str]]


def batch_norm_entries(name: str, channels: int) -> Layout:
    """A BatchNorm's five tensors, in the order torch saves them."""
    return [
        (f"{name}.weight", (channels,), "gamma"),
        (f"{name}.bias", (channels,), "bias"),
        (f"{name}.running_mean", (channels,), "mean"),
        (f"{name}.running_var", (channels,), "var"),
        (f"{name}.num_batches_tracked", (), "count"),
    ]


def random_tensor(role: str, shape: tuple[int, ...], gen: torch.Generator, count: int) -> torch.Tensor:
    """A tensor of a shared role (bias, gamma, mean, var; anything else: the batch count ``count``). Weights
    and format-specific roles are drawn by the test that knows their layout."""
    if role == "bias":
        return torch.randn(shape, generator=gen) * 0.1
    if role == "gamma":
        return torch.rand(shape, generator=gen) + 0.5
    if role == "mean":
        return torch.randn(shape, generator=gen) * 0.2
    if role == "var":
        return torch.rand(shape, generator=gen) * 1.5 + 0.5
    return torch.tensor(count, dtype=torch.int64)


def varied_clouds(batch: int, num_points: int, seed: int = 1) -> torch.Tensor:
    """(B, N, 3) clouds of varied proportions, centred and scaled into the unit sphere (as the references' data)."""
    gen = torch.Generator().manual_seed(seed)
    proportions = torch.rand(batch, 1, 3, generator=gen) * 1.5 + 0.1
    points = torch.randn(batch, num_points, 3, generator=gen) * proportions
    points = points - points.mean(dim=1, keepdim=True)
    return points / points.norm(dim=2).amax(dim=1).view(-1, 1, 1)
