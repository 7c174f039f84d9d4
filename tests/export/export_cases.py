"""Cards for the export tests (imported by conftest.py and the tests): the suite's tiny models.

The cards and checkpoints come from the one tiny-model registry (``tests/tiny_models.py``); only the parity
shapes are the export tests' own.
"""

from __future__ import annotations

from tiny_models import NUM_POINTS, tiny_card

from pointserve.card import ModelCard

# (B, N): the training N, N never seen in training (smaller, odd, larger) and N = 1.
PARITY_SHAPES = [(1, NUM_POINTS), (4, 512), (3, 777), (2, 2048), (1, 1)]


def cls_card() -> ModelCard:
    return tiny_card("pointnet_cls")


def partseg_card() -> ModelCard:
    return tiny_card("pointnet_partseg")


__all__ = ["NUM_POINTS", "PARITY_SHAPES", "cls_card", "partseg_card"]
