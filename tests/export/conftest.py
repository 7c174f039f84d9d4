"""Random-weight PointNet checkpoints (real safetensors + card.json, from ``tests/tiny_models.py``) and their
ONNX exports, built once.

Random weights give meaningless accuracy but exercise every op of the real networks, which is all the
parity and conversion checks need.
"""

from __future__ import annotations

import pytest
from export_cases import PARITY_SHAPES, cls_card, partseg_card
from tiny_models import random_checkpoint


@pytest.fixture(scope="session")
def cls_checkpoint(tmp_path_factory):
    return random_checkpoint(tmp_path_factory.mktemp("cls-ckpt"), cls_card(), seed=0)


@pytest.fixture(scope="session")
def partseg_checkpoint(tmp_path_factory):
    return random_checkpoint(tmp_path_factory.mktemp("partseg-ckpt"), partseg_card(), seed=1)


@pytest.fixture(scope="session")
def cls_export(cls_checkpoint, tmp_path_factory):
    from pointserve.export import export_onnx

    path = tmp_path_factory.mktemp("cls-onnx") / "fp32.onnx"
    return path, export_onnx(cls_checkpoint, path, parity_shapes=PARITY_SHAPES)


@pytest.fixture(scope="session")
def partseg_export(partseg_checkpoint, tmp_path_factory):
    from pointserve.export import export_onnx

    path = tmp_path_factory.mktemp("partseg-onnx") / "fp32.onnx"
    return path, export_onnx(partseg_checkpoint, path, parity_shapes=PARITY_SHAPES)
