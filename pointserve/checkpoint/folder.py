"""Checkpoints: ``model.safetensors`` + ``card.json`` in one folder. Never pickle.

Loading anything else (a ``.pt``/``.pth`` pickle, a folder without a card) fails with a clear error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pointserve.card import CARD_FILE, WEIGHTS_FILE, ModelCard
from pointserve.errors import CheckpointError
from pointserve.models import get_model

if TYPE_CHECKING:
    from torch import nn


def save_checkpoint(model: nn.Module, card: ModelCard, directory: str | Path) -> Path:
    """Write weights and card atomically enough for training: weights first, card last."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = directory / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"architecture": card.architecture})
    tmp.replace(directory / WEIGHTS_FILE)
    tmp_card = directory / (CARD_FILE + ".tmp")
    tmp_card.write_text(card.to_json() + "\n")
    tmp_card.replace(directory / CARD_FILE)
    return directory


def build_model(card: ModelCard) -> nn.Module:
    return get_model(card.architecture, **card.config)


def load_checkpoint(directory: str | Path, map_location: str = "cpu") -> tuple[nn.Module, ModelCard]:
    """Rebuild the network from its card and load its weights; returns ``(model in eval mode, card)``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    if directory.is_file():
        if directory.suffix in {".pt", ".pth", ".pkl", ".ckpt", ".tar"}:
            raise CheckpointError(
                f"{directory}: pickled checkpoints are not loaded (unsafe); pointserve checkpoints are a folder "
                "with model.safetensors and card.json — use `pointserve import-checkpoint` for other formats"
            )
        directory = directory.parent
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint folder")
    card = ModelCard.load(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing weights file")
    try:
        state = load_file(str(weights), device=map_location)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from None
    model = build_model(card)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{weights}: weights do not match {card.architecture} {card.config}: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    return model.eval(), card


__all__ = ["build_model", "load_checkpoint", "save_checkpoint"]
