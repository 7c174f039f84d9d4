"""Batches and inference over an in-memory :class:`PointCloudDataset`, through the architecture's spec.

Each cloud is resampled, augmented (training) and normalised, then goes through the family's preprocessor
and collate policy (:mod:`pointserve.models.collate`): exactly what export parity, calibration and the
service do, so a network is trained on the inputs it is served with. Batches from cached augmented epochs
(:mod:`pointserve.training.epoch_cache`) go through the same :func:`batch_order` and :func:`make_batch`.

Shapes:
    inputs: the graph's named tensors (e.g. points (B, N, C)); labels (B,); seg (B, N) or (sum N,) (concat)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pointserve.card import ModelCard
from pointserve.data.base import PointCloudDataset
from pointserve.data.transforms import normalize, resample_indices
from pointserve.models.collate import BatchLayout, cloud_inputs, collate, split
from pointserve.models.registry import get_spec
from pointserve.models.spec import LOGITS_OUTPUT, ArchitectureSpec


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    seg: torch.Tensor | None
    layout: BatchLayout


def prepare_sample(sample, card: ModelCard, rng: np.random.Generator | None, train: bool):
    """One sample -> (normalised points, per-point labels or None): resampled to the card's size, augmented as
    the family trains (``train``: draws from ``rng``; evaluation resamples with a fixed seed and never augments).

    The one definition of a training input: the live path (:func:`iterate_batches`) and the cached epochs
    (:mod:`pointserve.training.epoch_cache`) both call it, so a cached copy is exactly a live epoch's input.
    """
    idx = resample_indices(len(sample.points), card.num_points, rng if train else np.random.default_rng(0))
    points = sample.points[idx]
    seg = sample.seg[idx] if sample.seg is not None else None
    if train:
        points, seg = get_spec(card.architecture).augment(points, rng, seg)
    return normalize(points, card.normalization).astype(np.float32), seg


def batch_order(size: int, batch_size: int, rng: np.random.Generator | None = None, train: bool = False):
    """The sample indices of each batch: a permutation drawn from ``rng`` for training (a last batch of one is
    dropped: BatchNorm cannot train on it), dataset order for evaluation."""
    order = rng.permutation(size) if train else np.arange(size)
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        if train and len(chosen) < 2:
            continue
        yield chosen


def train_steps(size: int, batch_size: int) -> int:
    """How many batches :func:`batch_order` yields for training (the progress bar's total)."""
    return size // batch_size + (size % batch_size > 1)


def make_batch(
    spec: ArchitectureSpec,
    card: ModelCard,
    per_cloud: Sequence[Mapping[str, np.ndarray]],
    labels: Sequence[int],
    segs: Sequence[np.ndarray] | None,
    device: str = "cpu",
) -> Batch:
    """Per-cloud arrays (from :func:`cloud_inputs`), labels and per-point labels -> one :class:`Batch` on
    ``device``: the family's collate policy, and the seg labels joined the way that policy joins points."""
    feeds, layout = collate(spec, card, per_cloud)
    inputs = {name: torch.from_numpy(array).to(device) for name, array in feeds.items()}
    seg = None
    if segs is not None:
        joined = [np.asarray(s, dtype=np.int64) for s in segs]
        seg = torch.from_numpy(np.concatenate(joined) if spec.collate == "concat" else np.stack(joined)).to(device)
    return Batch(inputs, torch.tensor(list(labels), dtype=torch.long, device=device), seg, layout)


def iterate_batches(
    dataset: PointCloudDataset,
    card: ModelCard,
    batch_size: int,
    rng: np.random.Generator | None = None,
    train: bool = False,
    device: str = "cpu",
) -> Iterator[Batch]:
    """Shuffled augmented batches for training (``train=True``, needs ``rng``) or fixed ones for evaluation."""
    spec = get_spec(card.architecture)
    for chosen in batch_order(len(dataset), batch_size, rng, train):
        prepared = [prepare_sample(dataset[i], card, rng, train) for i in chosen]
        labels = [int(dataset[i].label) for i in chosen]
        per_cloud = [cloud_inputs(spec, card, p, label) for (p, _), label in zip(prepared, labels, strict=True)]
        segs = [s for _, s in prepared] if prepared[0][1] is not None else None
        yield make_batch(spec, card, per_cloud, labels, segs, device)


def model_forward(model: torch.nn.Module, card: ModelCard, batch: Batch, with_aux: bool = False):
    """One forward pass on the batch's named inputs; with ``with_aux`` also the family's auxiliary loss
    (``(logits, loss or None)``)."""
    spec = get_spec(card.architecture)
    if with_aux:
        if spec.auxiliary_loss is None:
            return model(**batch.inputs), None
        return spec.auxiliary_loss(model, batch.inputs)
    return model(**batch.inputs)


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    card: ModelCard,
    dataset: PointCloudDataset,
    batch_size: int = 32,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Logits for every sample (no augmentation), one row per cloud: ``(logits, labels, seg)``.

    Shapes: logits (S, K) or (S, N, P), labels (S,), seg (S, N)
    """
    spec = get_spec(card.architecture)
    model.eval()
    logits, labels, segs = [], [], []
    for batch in iterate_batches(dataset, card, batch_size, device=device):
        output = model_forward(model, card, batch)
        per_cloud = split(spec, card, {LOGITS_OUTPUT: output.float().cpu().numpy()}, batch.layout)
        logits.extend(cloud[LOGITS_OUTPUT] for cloud in per_cloud)
        labels.append(batch.labels.cpu().numpy())
        if batch.seg is not None:
            seg = batch.seg.cpu().numpy()
            segs.append(seg.reshape(len(per_cloud), -1))
    return np.stack(logits), np.concatenate(labels), (np.concatenate(segs) if segs else None)
