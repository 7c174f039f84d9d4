"""The default input limits of a model's engines, from its card and its family's spec."""

from __future__ import annotations

from pointserve.card import ModelCard
from pointserve.engines.base import InputLimits
from pointserve.models.registry import get_spec


def default_max_points(num_points: int) -> int:
    """Twice the training size, at least 2048: room for bigger clouds without a huge activation budget."""
    return max(2 * num_points, 2048)


def limits_for_card(card: ModelCard, max_batch: int = 64, max_points: int | None = None) -> InputLimits:
    """Default input limits of a model: batch up to ``max_batch``, 1 to ``max_points`` points per cloud (all
    clouds together when the family concatenates a batch), category ids below the number of categories."""
    spec = get_spec(card.architecture)
    per_cloud = max_points or spec.max_points or default_max_points(card.num_points)
    total = per_cloud * max_batch if spec.collate == "concat" else per_cloud
    bounds = {"category": len(card.class_names)} if card.needs_category else {}
    return InputLimits(dims={"batch": (1, max_batch), "num_points": (1, total)}, value_bounds=bounds)


__all__ = ["default_max_points", "limits_for_card"]
