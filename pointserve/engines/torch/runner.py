"""The PyTorch reference backend: runs a checkpoint folder (``model.safetensors`` + ``card.json``) in eager
mode. Every other backend is measured against it. torch is imported in ``_load_impl`` only.

The module is called with the graph's inputs by name (``model(**inputs)``), exactly as it was exported, and
its output (or tuple of outputs) is returned under the spec's output names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pointserve.card import ModelCard
from pointserve.engines.base import InputLimits, Runner
from pointserve.errors import BackendUnavailableError, CheckpointError
from pointserve.models.registry import get_spec


class TorchRunner(Runner):
    """Eager PyTorch on ``device`` ("cpu" or "cuda"), ``torch.inference_mode``."""

    backend = "torch"

    def __init__(
        self,
        checkpoint: str | Path,
        limits: InputLimits | None = None,
        *,
        card: ModelCard | None = None,
        device: str = "cpu",
        threads: int | None = None,
        name: str = "",
    ):
        """``checkpoint``: a checkpoint folder, or a ``.safetensors`` weights file together with ``card``
        (how a repository version keeps its reference weights)."""
        from pointserve.engines.limits import limits_for_card

        self.checkpoint = Path(checkpoint)
        if card is None:
            card = ModelCard.load(self.checkpoint if self.checkpoint.is_dir() else self.checkpoint.parent)
        self.card = card
        spec = get_spec(card.architecture)
        super().__init__(
            spec.inputs(card),
            spec.outputs(card),
            limits or limits_for_card(card),
            name or f"torch:{self.checkpoint.name}",
        )
        self.device = device
        self.threads = threads
        self.model: Any = None
        self._torch: Any = None

    def _load_impl(self) -> None:
        try:
            import torch
        except ImportError:
            raise BackendUnavailableError("the torch backend needs PyTorch: pip install torch") from None
        from pointserve.checkpoint import load_checkpoint

        if self.threads is not None:
            torch.set_num_threads(int(self.threads))
        if self.checkpoint.is_dir():
            model, _ = load_checkpoint(self.checkpoint)
        else:
            model = _model_from_weights(self.checkpoint, self.card)
        self.model = model.to(self.device).eval()
        self._torch = torch

    def _infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            result = self.model(**{name: torch.from_numpy(array).to(self.device) for name, array in feeds.items()})
        values = result if isinstance(result, (tuple, list)) else (result,)
        return {name: value.float().cpu().numpy() for name, value in zip(self.output_names, values, strict=True)}

    def _close_impl(self) -> None:
        self.model = None


def _model_from_weights(weights: Path, card: ModelCard) -> Any:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from pointserve.checkpoint import build_model

    if not weights.is_file():
        raise CheckpointError(f"{weights}: weights file not found")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from None
    model = build_model(card)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{weights}: weights do not match {card.architecture}: missing {sorted(missing)[:5]}")
    return model


__all__ = ["TorchRunner"]
