"""Builds a tiny real model repository for the service tests: random-weight PointNets saved as checkpoints and
published (exported to ONNX with the parity check, added as a version) the way `pointserve export` does."""

from __future__ import annotations

from pathlib import Path

from pointserve.card import ModelCard

CLASSIFIER = "shapes-cls"
PART_SEGMENTER = "parts"

CARDS = {
    CLASSIFIER: ModelCard(
        architecture="pointnet_cls",
        config={"num_classes": 4},
        task="classification",
        class_names=["cube", "sphere", "cone", "torus"],
        num_points=64,
        normalization="unit_sphere",
        dataset="test",
    ),
    PART_SEGMENTER: ModelCard(
        architecture="pointnet_partseg",
        config={"num_parts": 6, "num_categories": 2},
        task="part_segmentation",
        class_names=["mug", "lamp"],
        part_names=["body", "handle", "lid", "base", "shade", "stem"],
        category_parts={"mug": [0, 1, 2], "lamp": [3, 4, 5]},
        num_points=64,
        normalization="unit_sphere",
        dataset="test",
    ),
}


def _randomise_batch_norm(model, seed: int) -> None:
    # Fresh BatchNorm statistics (mean 0, var 1) make every logit nearly equal; random ones give a
    # model whose classes and parts actually differ between clouds, so the tests can tell answers apart.
    import torch

    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.2)


def publish_model(root: Path, name: str, seed: int):
    """Publish a random-weight model ``name`` (``seed``: its weights) as the next version in ``root``; returns the
    :class:`~pointserve.repository.store.ModelVersion`."""
    import torch

    from pointserve.checkpoint import save_checkpoint
    from pointserve.export.publish import publish_checkpoint
    from pointserve.models import get_model

    card = CARDS[name]
    torch.manual_seed(seed)
    model = get_model(card.architecture, **card.config).eval()
    _randomise_batch_norm(model, seed)
    checkpoint = save_checkpoint(model, card, root.parent / f"{root.name}-checkpoints" / f"{name}-{seed}")
    version, _ = publish_checkpoint(checkpoint, root, name)
    return version


def build_repository(root: Path, names: tuple[str, ...] = (CLASSIFIER, PART_SEGMENTER)) -> Path:
    """Save each model as a checkpoint and publish it (export, parity check, new version) into ``root``."""
    for seed, name in enumerate(names):
        publish_model(root, name, seed)
    return root
