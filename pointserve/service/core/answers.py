"""Logits to answers: classification (class, score, top-k) and segmentation (a label for every input point).

Shapes:
    classification logits: (K,) -> {"class_id", "label", "score", "top_k", ["probabilities"]}
    segmentation logits:   (n, P) for the n processed points -> labels (N,) for every input point
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pointserve.card import ModelCard
from pointserve.errors import InputError
from pointserve.service.core.clouds import Cloud, option_value, shown, source_rows, whole_number

DEFAULT_TOP_K = 5
_SMALL_K = 64


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, in float64."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


MAX_TOP_K = 2**31 - 1  # more than any model's classes; answers rank min(top_k, classes)
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def check_top_k(top_k: Any, where: str = "top_k") -> int | None:
    """``top_k``'s one rule, whatever carried it (JSON body, query string, form field): a whole number from 1 to
    MAX_TOP_K. Query text reads as JSON (``?top_k=1e30`` is the body's ``1e30``), so the same value gets the
    same answer, and integers past 64 bits (floats to orjson) meet the same bound as the query's."""
    top_k = option_value(top_k)
    if top_k is None:
        return None
    number = whole_number(top_k)
    if number is None:
        raise InputError(f"{where} must be a positive integer, got {shown(top_k)}")
    if number < 1:
        raise InputError(f"{where} must be at least 1, got {shown(top_k)}")
    if number > MAX_TOP_K:
        raise InputError(f"{where} must be at most {MAX_TOP_K}, got {shown(top_k)}")
    return number


def check_flag(value: Any, where: str) -> bool | None:
    """A yes/no option (``return_probabilities``, ``return_logits``, OIP's ``binary_data``...): true or false,
    or the text a query string or form carries (1/0, yes/no, on/off)."""
    value = option_value(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if whole_number(value) in (0, 1):
        return bool(value)
    raise InputError(f"{where} must be true or false, got {shown(value)}")


def classification_answer(
    logits: np.ndarray,
    card: ModelCard,
    *,
    top_k: int | None = None,
    return_probabilities: bool = False,
    return_logits: bool = False,
) -> dict[str, Any]:
    names = card.class_names
    values = logits.tolist()
    if len(values) <= _SMALL_K:
        # For a few classes plain Python beats a handful of numpy calls on tiny arrays (~10x, per request).
        largest = max(values)
        exps = [math.exp(v - largest) for v in values]
        total = math.fsum(exps)
        probabilities = [e / total for e in exps]
    else:
        probabilities = softmax(logits).tolist()
    k = min(top_k or DEFAULT_TOP_K, len(probabilities))
    order = sorted(range(len(probabilities)), key=probabilities.__getitem__, reverse=True)[:k]
    ranked = [{"class_id": i, "label": names[i], "score": probabilities[i]} for i in order]
    answer: dict[str, Any] = {**ranked[0], "top_k": ranked}
    if return_probabilities:
        answer["probabilities"] = dict(zip(names, probabilities, strict=True))
    if return_logits:
        answer["logits"] = values
    return answer


def allowed_parts_mask(card: ModelCard, category: int | None) -> np.ndarray | None:
    """(P,) bool: the parts the category may have (part segmentation restricts its argmax to them)."""
    if category is None or not card.category_parts:
        return None
    parts = card.category_parts.get(card.class_names[category])
    if not parts:
        return None
    mask = np.zeros(len(card.part_names), dtype=bool)
    mask[parts] = True
    return mask


def segmentation_answer(
    logits: np.ndarray,
    cloud: Cloud,
    card: ModelCard,
    *,
    return_probabilities: bool = False,
    return_logits: bool = False,
) -> dict[str, Any]:
    """Labels for every input point, in input order; points that were not processed (the cloud was
    resampled for the engine) take the label of their nearest processed neighbour."""
    mask = allowed_parts_mask(card, cloud.category)
    scores = logits if mask is None else np.where(mask, logits, -np.inf)
    processed_labels = scores.argmax(axis=1)
    rows = source_rows(cloud)
    labels = processed_labels if rows is None else processed_labels[rows]
    names = card.part_names
    counts = np.bincount(labels, minlength=len(names))
    answer: dict[str, Any] = {
        "labels": labels.tolist(),
        "label_names": names,
        "counts": {names[i]: int(c) for i, c in enumerate(counts) if c},
        "num_points": int(len(labels)),
        "num_processed_points": int(len(processed_labels)),
        "resampled": rows is not None,
    }
    if cloud.category is not None:
        answer["category"] = card.class_names[cloud.category]
        answer["category_id"] = cloud.category
    if return_probabilities:
        probabilities = softmax(scores if mask is None else np.where(mask, logits, -1e30))
        answer["probabilities"] = (probabilities if rows is None else probabilities[rows]).round(6).tolist()
    if return_logits:
        answer["logits"] = (logits if rows is None else logits[rows]).tolist()
    return answer


def full_logits(logits: np.ndarray, cloud: Cloud) -> np.ndarray:
    """Per-point logits for every input point (nearest processed neighbour for the unprocessed ones).

    Shapes: (n, P) -> (N, P); classification logits (K,) pass through.
    """
    if logits.ndim == 1:
        return logits
    rows = source_rows(cloud)
    return logits if rows is None else logits[rows]
