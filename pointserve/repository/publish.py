"""What the repository keeps of a published checkpoint: its default model name, and the checkpoint's own weights
as the ``fp32-torch`` variant (the accuracy reference). Publishing itself (export, then a new version) is
:func:`pointserve.export.publish.publish_checkpoint`."""

from __future__ import annotations

from pathlib import Path

from pointserve.card import WEIGHTS_FILE
from pointserve.errors import ConfigError
from pointserve.repository.manifest import REFERENCE_VARIANT
from pointserve.repository.store import ModelVersion

_TASK_SUFFIX = {"classification": "cls", "part_segmentation": "partseg", "semantic_segmentation": "seg"}


def default_model_name(card) -> str:
    return f"{card.dataset or card.architecture}-{_TASK_SUFFIX.get(card.task, card.task)}"


def add_reference_weights(model_version: ModelVersion, checkpoint_dir: str | Path) -> None:
    """Keep the checkpoint's weights in the version as variant ``fp32-torch`` (the accuracy reference;
    never picked by the engines' variant selection, so serving images need no torch)."""
    weights = Path(checkpoint_dir) / WEIGHTS_FILE
    if not weights.is_file():
        raise ConfigError(f"{weights}: no weights to keep as the reference")
    model_version.add_variant(REFERENCE_VARIANT, weights, precision="fp32", backend="torch", move=False)
