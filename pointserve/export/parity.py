"""Parity of an exported graph with its PyTorch module: same logits within a tolerance, same argmax.

The check runs the graph in ONNX Runtime (CPU, default graph optimisations: what the service runs) and the
module in eval mode on the same random clouds for several (B, N), including point counts never seen in
training and N = 1.

Argmax: a flip between two logits whose PyTorch margin is below ``2 * tolerance`` is a numerical tie, not a
disagreement (segmentation boundaries have such points); it is counted in ``near_ties`` and, like every
mismatch, recorded, but only mismatches outside ties fail the check.

The inputs are made by the family's preprocessor and collate policy (:func:`pointserve.models.collate.random_feeds`)
from random clouds normalised as the card says; the first output (the logits) is compared.

Shapes (PointNet): points (B, N, C) float32, category (B,) int64 -> logits (B, K) or (B, N, P)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict

from pointserve.card import ModelCard
from pointserve.errors import ExportError
from pointserve.models.collate import random_feeds
from pointserve.models.registry import get_spec

if TYPE_CHECKING:
    from torch import nn

DEFAULT_PARITY_TOLERANCE = 1e-4


class ParityResult(BaseModel):
    """PyTorch vs ONNX Runtime on one (B, N)."""

    model_config = ConfigDict(extra="forbid")

    batch: int
    num_points: int
    max_abs_diff: float
    argmax_equal: bool
    argmax_mismatches: int = 0
    near_ties: int = 0


def default_parity_shapes(card: ModelCard) -> list[tuple[int, int]]:
    """The (B, N) pairs the architecture's spec asks parity on (by default: the training N, N = 1, and
    sizes never seen in training)."""
    return get_spec(card.architecture).parity_shapes(card)


def compare_logits(reference: np.ndarray, candidate: np.ndarray, tolerance: float) -> tuple[float, int, int]:
    """``(max |Δ|, argmax mismatches, mismatches that are near ties)`` over the last (class) axis."""
    max_abs = float(np.max(np.abs(reference.astype(np.float64) - candidate.astype(np.float64))))
    ref_arg, cand_arg = reference.argmax(-1), candidate.argmax(-1)
    mismatched = ref_arg != cand_arg
    top2 = np.sort(reference, axis=-1)[..., -2:] if reference.shape[-1] > 1 else np.zeros(reference.shape[:-1] + (2,))
    margin = top2[..., 1] - top2[..., 0]
    ties = mismatched & (margin <= 2 * tolerance)
    return max_abs, int(mismatched.sum()), int(ties.sum())


def check_parity(
    model: nn.Module,
    card: ModelCard,
    onnx_model: str | Path | bytes,
    shapes: Sequence[tuple[int, int]] | None = None,
    *,
    tolerance: float = DEFAULT_PARITY_TOLERANCE,
    seed: int = 0,
) -> list[ParityResult]:
    """Compare the module with the graph (a path or serialised bytes) on each (B, N) in ``shapes``.

    Raises :class:`ExportError` naming the first (B, N) where max |Δlogit| > ``tolerance`` or the argmax
    differs outside near ties; otherwise returns one :class:`ParityResult` per shape.
    """
    import onnxruntime as ort
    import torch

    source = str(onnx_model) if isinstance(onnx_model, Path) else onnx_model
    try:
        session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ExportError(f"ONNX Runtime cannot load the exported graph: {exc}") from None
    model = model.eval()
    spec = get_spec(card.architecture)
    output = spec.outputs(card)[0].name
    rng = np.random.default_rng(seed)
    results = []
    for batch, num_points in shapes if shapes is not None else default_parity_shapes(card):
        feeds, _ = random_feeds(spec, card, batch, num_points, rng)
        with torch.no_grad():
            reference = model(**{name: torch.from_numpy(array) for name, array in feeds.items()})
            reference = (reference[0] if isinstance(reference, (tuple, list)) else reference).numpy()
        try:
            candidate = session.run([output], feeds)[0]
        except Exception as exc:
            raise ExportError(f"exported graph fails at B={batch}, N={num_points}: {exc}") from None
        if candidate.shape != reference.shape:
            raise ExportError(
                f"at B={batch}, N={num_points} the graph gives {candidate.shape}, torch {reference.shape}"
            )
        max_abs, mismatches, ties = compare_logits(reference, candidate, tolerance)
        result = ParityResult(
            batch=batch,
            num_points=num_points,
            max_abs_diff=max_abs,
            argmax_equal=mismatches == 0,
            argmax_mismatches=mismatches,
            near_ties=ties,
        )
        if not np.isfinite(max_abs) or max_abs > tolerance or mismatches > ties:
            raise ExportError(
                f"parity check failed at B={batch}, N={num_points}: max |Δlogit| {max_abs:.3g} "
                f"(tolerance {tolerance:g}), {mismatches - ties} argmax mismatches outside near ties"
            )
        results.append(result)
    return results


__all__ = ["DEFAULT_PARITY_TOLERANCE", "ParityResult", "check_parity", "compare_logits", "default_parity_shapes"]
