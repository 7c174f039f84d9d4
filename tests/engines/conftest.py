"""Tiny random-weight PointNets as real checkpoints, real ONNX files and a real repository (built once).

The checkpoints come from the suite's one tiny-model registry (``tests/tiny_models.py``); the cards are shaped
like the built-in ``shapes`` models (12 classes; 29 parts over 12 categories) because the commands tested
here evaluate and calibrate on that data set.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import random_checkpoint

from pointserve.card import ModelCard
from pointserve.models import get_spec
from pointserve.repository import Repository

NUM_POINTS = 64


def _export(model, card: ModelCard, path: Path) -> None:
    """TorchScript export (fast, fine for tests) with the spec's tensor names; the production path is
    pointserve.export."""
    import torch

    spec = get_spec(card.architecture)
    inputs, outputs = spec.inputs(card), spec.outputs(card)
    example = {"points": torch.zeros(2, NUM_POINTS, card.in_channels)}
    if card.needs_category:
        example["category"] = torch.zeros(2, dtype=torch.long)
    axes = {
        tensor.name: {axis: dim for axis, dim in enumerate(tensor.shape) if isinstance(dim, str)}
        for tensor in [*inputs, *outputs]
    }
    torch.onnx.export(
        model,
        tuple(example[tensor.name] for tensor in inputs),
        str(path),
        dynamo=False,
        input_names=[tensor.name for tensor in inputs],
        output_names=[tensor.name for tensor in outputs],
        dynamic_axes=axes,
        opset_version=17,
    )


def _make(tmp: Path, name: str, card: ModelCard) -> dict:
    from pointserve.checkpoint import load_checkpoint

    checkpoint = random_checkpoint(tmp / f"{name}-ckpt", card, seed=0)
    model, _ = load_checkpoint(checkpoint)
    onnx_path = tmp / f"{name}.onnx"
    _export(model.eval(), card, onnx_path)
    return {"card": card, "checkpoint": checkpoint, "onnx": onnx_path, "model": model}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("tiny-models")
    from pointserve.data.shapes import CATEGORY_PARTS, CLASS_NAMES, PART_NAMES

    # Shaped like the built-in ``shapes`` models (12 classes; 29 parts over 12 categories), random weights.
    cls_card = ModelCard(
        architecture="pointnet_cls",
        config={"num_classes": len(CLASS_NAMES)},
        task="classification",
        class_names=list(CLASS_NAMES),
        num_points=NUM_POINTS,
        dataset="shapes",
    )
    seg_card = ModelCard(
        architecture="pointnet_partseg",
        config={"num_parts": len(PART_NAMES), "num_categories": len(CLASS_NAMES)},
        task="part_segmentation",
        class_names=list(CLASS_NAMES),
        part_names=list(PART_NAMES),
        category_parts={k: list(v) for k, v in CATEGORY_PARTS.items()},
        num_points=NUM_POINTS,
        dataset="shapes",
    )
    return {"cls": _make(tmp, "cls", cls_card), "seg": _make(tmp, "seg", seg_card)}


@pytest.fixture
def repository(tiny_models, tmp_path) -> Repository:
    """A fresh repository with both tiny models' fp32 ONNX variants (the manifest's tensors: the spec's)."""
    repo = Repository(tmp_path / "repo")
    for key in ("cls", "seg"):
        card = tiny_models[key]["card"]
        spec = get_spec(card.architecture)
        version = repo.create_version(
            f"tiny-{key}", card=card, inputs=spec.inputs(card), outputs=spec.outputs(card), export_report={}
        )
        version.add_variant("fp32", tiny_models[key]["onnx"], precision="fp32", backend="onnxruntime", move=False)
    return repo
