"""Cards and random-weight checkpoints for the export tests (imported by conftest.py and the tests)."""

from __future__ import annotations

from pointserve.card import ModelCard

NUM_POINTS = 128
# (B, N): the training N, N never seen in training (smaller, odd, larger) and N = 1.
PARITY_SHAPES = [(1, NUM_POINTS), (4, 512), (3, 777), (2, 2048), (1, 1)]


def cls_card() -> ModelCard:
    return ModelCard(
        architecture="pointnet_cls",
        config={"num_classes": 5},
        task="classification",
        class_names=["a", "b", "c", "d", "e"],
        num_points=NUM_POINTS,
        dataset="shapes",
    )


def partseg_card() -> ModelCard:
    return ModelCard(
        architecture="pointnet_partseg",
        config={"num_parts": 6, "num_categories": 3, "feature_transform": True},
        task="part_segmentation",
        class_names=["x", "y", "z"],
        part_names=[f"p{i}" for i in range(6)],
        category_parts={"x": [0, 1], "y": [2, 3], "z": [4, 5]},
        num_points=NUM_POINTS,
        dataset="shapes",
    )


def random_checkpoint(directory, card: ModelCard, seed: int):
    import torch

    from pointserve.checkpoint import save_checkpoint
    from pointserve.models import get_model

    torch.manual_seed(seed)
    model = get_model(card.architecture, **card.config)
    with torch.no_grad():  # non-trivial batch-norm statistics, so folding them into the weights is tested
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return save_checkpoint(model.eval(), card, directory)
