"""Tiny random-weight PointNets as real checkpoints, real ONNX files and a real repository (built once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pointserve.card import ModelCard
from pointserve.repository import Repository, TensorSpec

NUM_POINTS = 64


def _export(model, card: ModelCard, path: Path) -> None:
    """TorchScript export (fast, fine for tests); the production path is pointserve.export."""
    import torch

    example = (torch.zeros(2, NUM_POINTS, 3),)
    names = ["points"]
    axes = {"points": {0: "batch", 1: "num_points"}, "logits": {0: "batch"}}
    if card.needs_category:
        example += (torch.zeros(2, dtype=torch.long),)
        names.append("category")
        axes["category"] = {0: "batch"}
        axes["logits"][1] = "num_points"
    torch.onnx.export(
        model,
        example,
        str(path),
        dynamo=False,
        input_names=names,
        output_names=["logits"],
        dynamic_axes=axes,
        opset_version=17,
    )


def _specs(card: ModelCard):
    inputs = [TensorSpec(name="points", dtype="float32", shape=["batch", "num_points", 3])]
    if card.needs_category:
        inputs.append(TensorSpec(name="category", dtype="int64", shape=["batch"]))
    out = ["batch", card.num_outputs] if card.task == "classification" else ["batch", "num_points", card.num_outputs]
    return inputs, [TensorSpec(name="logits", dtype="float32", shape=out)]


def _make(tmp: Path, name: str, card: ModelCard) -> dict:
    import torch

    from pointserve.checkpoint import save_checkpoint
    from pointserve.models import get_model

    torch.manual_seed(0)
    model = get_model(card.architecture, **card.config).eval()
    checkpoint = save_checkpoint(model, card, tmp / f"{name}-ckpt")
    onnx_path = tmp / f"{name}.onnx"
    _export(model, card, onnx_path)
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
    """A fresh repository with both tiny models' fp32 ONNX variants."""
    repo = Repository(tmp_path / "repo")
    for key in ("cls", "seg"):
        card = tiny_models[key]["card"]
        inputs, outputs = _specs(card)
        version = repo.create_version(f"tiny-{key}", card=card, inputs=inputs, outputs=outputs, export_report={})
        version.add_variant("fp32", tiny_models[key]["onnx"], precision="fp32", backend="onnxruntime", move=False)
    return repo
