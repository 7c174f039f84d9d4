"""The one tiny-model registry of the test suite: a random-weight checkpoint of every registered architecture.

Built from ``list_models()`` — the shipped families and the test-only ones registered by ``tests/conftest.py``
— through each spec's own ``model_config``, so a new family is tested the moment it is registered.
Random weights give meaningless accuracy but exercise every op of the real networks, which is all parity,
conversion, batching and serving checks need; batch-norm statistics are randomised so folding them is tested.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from pointserve.card import ModelCard
from pointserve.data.base import PointCloudDataset, Sample
from pointserve.models import get_spec, list_models

NUM_POINTS = 128
CLASS_NAMES = ["a", "b", "c"]
PART_NAMES = ["p0", "p1", "p2", "p3", "p4", "p5"]
CATEGORY_PARTS = {"a": [0, 1], "b": [2, 3], "c": [4, 5]}
# Hyper-parameters every spec may read; tiny, and with PointNet's feature transform on (more ops exported).
OPTIONS = {"feature_transform": True, "dropout": 0.3, "k": 8}


def architectures() -> list[str]:
    """Every registered architecture (the parametrisation of the family-wide tests)."""
    return list_models()


def tiny_dataset(task: str, samples: int = 6, seed: int = 0) -> PointCloudDataset:
    """A few random clouds with the labels the task needs (what a spec's ``model_config`` reads)."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(samples):
        label = i % len(CLASS_NAMES)
        points = rng.standard_normal((NUM_POINTS, 3)).astype(np.float32)
        seg = None
        if task != "classification":
            parts = CATEGORY_PARTS[CLASS_NAMES[label]] if task == "part_segmentation" else range(len(PART_NAMES))
            seg = rng.choice(list(parts), NUM_POINTS).astype(np.int64)
        items.append(Sample(points, label, seg))
    return PointCloudDataset(
        name="tiny",
        split="train",
        task=task,  # type: ignore[arg-type]
        samples=items,
        class_names=list(CLASS_NAMES),
        part_names=list(PART_NAMES) if task != "classification" else [],
        category_parts=dict(CATEGORY_PARTS) if task == "part_segmentation" else {},
    )


SEMANTIC = "tiny_semantic"


def load_tiny_semantic(split: str, *, seed: int = 0, **_) -> PointCloudDataset:
    """A dataset loader (register it under ``SEMANTIC``) of random clouds with per-point labels, since no built-in
    dataset serves semantic segmentation: 9 train clouds (batches of 4 leave a last one, which training drops)."""
    data = tiny_dataset(
        "semantic_segmentation", samples=9 if split == "train" else 4, seed=2 * seed + (split != "train")
    )
    return dataclasses.replace(data, name=SEMANTIC, split=split)


def tiny_card(architecture: str, *, dataset: str = "shapes") -> ModelCard:
    """The card of a tiny model of ``architecture`` (``dataset`` names what calibration would draw from)."""
    spec = get_spec(architecture)
    data = tiny_dataset(spec.task)
    return ModelCard(
        architecture=architecture,
        config=spec.model_config(data, OPTIONS),
        preprocessing=spec.preprocessing(OPTIONS),
        task=spec.task,
        class_names=data.class_names,
        part_names=data.part_names,
        category_parts=data.category_parts,
        num_points=NUM_POINTS,
        dataset=dataset,
    )


def random_checkpoint(directory: Path, card: ModelCard, seed: int = 0) -> Path:
    """Save a random-weight model of ``card`` as a real checkpoint folder; returns the folder."""
    import torch

    from pointserve.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    model = get_spec(card.architecture).build(card)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return save_checkpoint(model.eval(), card, directory)
