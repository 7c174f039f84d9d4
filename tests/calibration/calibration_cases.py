"""A briefly trained classifier and a random part segmenter on the built-in ``shapes`` data (helpers for conftest)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from pointserve.card import ModelCard
from pointserve.data import PointCloudDataset, load_dataset

NUM_POINTS = 64
CALIBRATION_SAMPLES = 64
# Four classes that a PointNet separates after a few epochs, so int8-vs-fp32 comparisons mean something.
CLASSES = ["airplane", "bottle", "shelf", "umbrella"]


def class_subset(split: str, per_class: int) -> PointCloudDataset:
    """The ``shapes`` split restricted to CLASSES, labels renumbered 0..3."""
    full = load_dataset("shapes", split, task="classification", num_points=NUM_POINTS, samples_per_class=per_class)
    keep = [full.class_names.index(name) for name in CLASSES]
    samples = [replace(s, label=keep.index(s.label)) for s in full.samples if s.label in keep]
    return replace(full, samples=samples, class_names=list(CLASSES))


def train_classifier(directory: Path, train: PointCloudDataset, epochs: int = 8) -> Path:
    """A few epochs of the real training batches (pointserve.training.loop: resample, augment, normalise,
    then the family's preprocessor and collate policy)."""
    import torch

    from pointserve.checkpoint import save_checkpoint
    from pointserve.models import get_model
    from pointserve.training.loop import iterate_batches

    card = ModelCard(
        architecture="pointnet_cls",
        config={"num_classes": len(CLASSES)},
        task="classification",
        class_names=list(CLASSES),
        num_points=NUM_POINTS,
        dataset="shapes",
    )
    torch.manual_seed(0)
    model = get_model(card.architecture, **card.config)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    rng = np.random.default_rng(0)
    for _ in range(epochs):
        model.train()
        for batch in iterate_batches(train, card, 16, rng, train=True):
            loss = torch.nn.functional.cross_entropy(model(**batch.inputs), batch.labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return save_checkpoint(model.eval(), card, directory)


def random_part_segmenter(directory: Path) -> Path:
    """Random weights (the suite's tiny-model checkpoint maker), shaped like a ``shapes`` part-segmentation
    model (12 categories, their parts): calibration draws its clouds from that data set."""
    from tiny_models import random_checkpoint

    from pointserve.data.shapes import CATEGORY_PARTS, CLASS_NAMES, PART_NAMES

    card = ModelCard(
        architecture="pointnet_partseg",
        config={"num_parts": len(PART_NAMES), "num_categories": len(CLASS_NAMES)},
        task="part_segmentation",
        class_names=list(CLASS_NAMES),
        part_names=list(PART_NAMES),
        category_parts=dict(CATEGORY_PARTS),
        num_points=NUM_POINTS,
        dataset="shapes",
    )
    return random_checkpoint(directory, card, seed=0)
