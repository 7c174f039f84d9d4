"""Checkpoints: the folder format (``model.safetensors`` + ``card.json``, never pickle) and importers of other
projects' checkpoints (:mod:`pointserve.checkpoint.importers`).

Importing this package imports no torch; loading or saving a checkpoint does.
"""

from __future__ import annotations

from pointserve.checkpoint.folder import build_model, load_checkpoint, save_checkpoint

__all__ = ["build_model", "load_checkpoint", "save_checkpoint"]
