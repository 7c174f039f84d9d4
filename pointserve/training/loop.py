"""Batching, augmentation and inference over an in-memory :class:`PointCloudDataset`.

Shapes:
    batch points: (B, N, C) float32, labels (B,), seg (B, N), categories (B,)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from pointserve.data.base import PointCloudDataset
from pointserve.data.transforms import augment, normalize, resample_indices


@dataclass
class Batch:
    points: torch.Tensor
    labels: torch.Tensor
    seg: torch.Tensor | None


def _prepare(sample, num_points: int, normalization: str, rng: np.random.Generator | None, train: bool):
    idx = resample_indices(len(sample.points), num_points, rng if train else np.random.default_rng(0))
    points = sample.points[idx]
    seg = sample.seg[idx] if sample.seg is not None else None
    if train:
        points, seg = augment(points, rng, seg)
    return normalize(points, normalization), seg


def iterate_batches(
    dataset: PointCloudDataset,
    batch_size: int,
    num_points: int,
    normalization: str = "unit_sphere",
    rng: np.random.Generator | None = None,
    train: bool = False,
    device: str = "cpu",
) -> Iterator[Batch]:
    """Shuffled augmented batches for training (``train=True``, needs ``rng``) or fixed ones for evaluation."""
    order = rng.permutation(len(dataset)) if train else np.arange(len(dataset))
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        if train and len(chosen) < 2:  # BatchNorm cannot train on a batch of one
            continue
        prepared = [_prepare(dataset[i], num_points, normalization, rng, train) for i in chosen]
        points = torch.from_numpy(np.stack([p for p, _ in prepared])).to(device)
        labels = torch.tensor([dataset[i].label for i in chosen], dtype=torch.long, device=device)
        seg = None
        if prepared[0][1] is not None:
            seg = torch.from_numpy(np.stack([s for _, s in prepared]).astype(np.int64)).to(device)
        yield Batch(points, labels, seg)


def model_forward(model: torch.nn.Module, task: str, batch: Batch, with_transform: bool = False):
    """One forward pass that passes the category to part-segmentation models."""
    args = (batch.points, batch.labels) if task == "part_segmentation" else (batch.points,)
    if with_transform:
        return model.forward_with_transform(*args)
    return model(*args)


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    task: str,
    dataset: PointCloudDataset,
    num_points: int,
    normalization: str,
    batch_size: int = 32,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Logits for every sample (no augmentation): ``(logits, labels, seg)``."""
    model.eval()
    logits, labels, segs = [], [], []
    for batch in iterate_batches(dataset, batch_size, num_points, normalization, device=device):
        logits.append(model_forward(model, task, batch).float().cpu().numpy())
        labels.append(batch.labels.cpu().numpy())
        if batch.seg is not None:
            segs.append(batch.seg.cpu().numpy())
    return np.concatenate(logits), np.concatenate(labels), (np.concatenate(segs) if segs else None)
