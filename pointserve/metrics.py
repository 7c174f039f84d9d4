"""Evaluation metrics (numpy), one function per task, used by training and by variant evaluation alike:
overall / mean class accuracy, and part-segmentation IoU as in PointNet.

Shapes:
    classification: predictions (S,), labels (S,)
    part segmentation: predictions (S, N), seg (S, N), categories (S,)
"""

from __future__ import annotations

import numpy as np


def classification_metrics(predictions: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """Overall accuracy, mean class accuracy (over classes present) and per-class accuracy, in [0, 1]."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    per_class = {}
    for k, name in enumerate(class_names):
        mask = labels == k
        if mask.any():
            per_class[name] = float((predictions[mask] == k).mean())
    return {
        "overall_acc": float((predictions == labels).mean()) if len(labels) else 0.0,
        "mean_class_acc": float(np.mean(list(per_class.values()))) if per_class else 0.0,
        "per_class_acc": per_class,
        "num_samples": int(len(labels)),
    }


def restrict_to_category(logits: np.ndarray, categories: np.ndarray, category_parts: list[list[int]]) -> np.ndarray:
    """Argmax over each shape's own category parts only (the PointNet part-segmentation protocol).

    Shapes: logits (S, N, P), categories (S,) -> predictions (S, N)
    """
    mask = np.full((len(category_parts), logits.shape[-1]), -np.inf, dtype=np.float32)
    for c, parts in enumerate(category_parts):
        mask[c, parts] = 0.0
    return np.argmax(logits + mask[categories][:, None, :], axis=-1)


def shape_iou(pred: np.ndarray, seg: np.ndarray, parts: list[int]) -> float:
    """Mean IoU over a category's parts for one shape; a part absent from both counts as IoU 1."""
    ious = []
    for part in parts:
        union = np.logical_or(pred == part, seg == part).sum()
        inter = np.logical_and(pred == part, seg == part).sum()
        ious.append(1.0 if union == 0 else inter / union)
    return float(np.mean(ious))


def part_segmentation_metrics(
    predictions: np.ndarray,
    seg: np.ndarray,
    categories: np.ndarray,
    category_names: list[str],
    category_parts: list[list[int]],
) -> dict:
    """Instance mIoU (mean over shapes), class mIoU (mean over categories) and per-category mIoU.

    Point accuracy is reported too. ``category_parts[c]`` lists the global part ids of category ``c``.
    """
    per_shape = np.array(
        [shape_iou(p, s, category_parts[c]) for p, s, c in zip(predictions, seg, categories, strict=True)]
    )
    per_category = {}
    for c, name in enumerate(category_names):
        mask = categories == c
        if mask.any():
            per_category[name] = float(per_shape[mask].mean())
    return {
        "instance_miou": float(per_shape.mean()) if len(per_shape) else 0.0,
        "class_miou": float(np.mean(list(per_category.values()))) if per_category else 0.0,
        "point_acc": float((np.asarray(predictions) == np.asarray(seg)).mean()) if len(per_shape) else 0.0,
        "per_category_miou": per_category,
        "num_samples": int(len(per_shape)),
    }


def predictions(
    task: str, logits: np.ndarray, labels: np.ndarray, category_parts: list[list[int]] | None
) -> np.ndarray:
    """Argmax of the logits; for part segmentation restricted to each shape's category parts.

    Shapes: logits (S, K) or (S, N, P), labels (S,) -> (S,) or (S, N)
    """
    if task == "part_segmentation" and category_parts:
        return restrict_to_category(logits, labels, category_parts)
    return logits.argmax(-1)


def task_metrics(
    task: str,
    predicted: np.ndarray,
    labels: np.ndarray,
    seg: np.ndarray | None,
    class_names: list[str],
    category_parts: list[list[int]] | None = None,
    num_outputs: int = 0,
    label_names: list[str] | None = None,
) -> dict:
    """The metrics of a task from predictions (:func:`predictions`): the one dispatch that training and
    variant evaluation share.

    classification: accuracies; part segmentation: mIoU per PointNet's protocol; semantic segmentation:
    every label is a "part" of one scene category (instance mIoU over scenes, point accuracy), plus the split's
    per-class IoU and their mean (:func:`semantic_iou`, ``label_names`` naming the classes).
    """
    if task == "classification":
        return classification_metrics(predicted, labels, class_names)
    if seg is None:
        raise ValueError(f"{task} metrics need per-point labels")
    if task == "part_segmentation":
        return part_segmentation_metrics(predicted, seg, labels, class_names, category_parts or [])
    everything = [list(range(num_outputs))]
    metrics = part_segmentation_metrics(predicted, seg, np.zeros(len(predicted), dtype=int), ["all"], everything)
    return {**metrics, **semantic_iou(predicted, seg, label_names, num_outputs)}


def semantic_iou(predicted, seg, names: list[str] | None, num_outputs: int) -> dict:
    """Per-class IoU over the whole split (``TP / (TP + FP + FN)``, every point of every scan counted once, as
    SemanticKITTI and S3DIS report it) and their mean over the classes that occur in labels or predictions.

    ``predicted`` / ``seg``: arrays or lists of per-scan arrays (scans differ in size).
    """
    pred = np.concatenate([np.ravel(p) for p in predicted]) if len(predicted) else np.zeros(0, int)
    true = np.concatenate([np.ravel(t) for t in seg]) if len(seg) else np.zeros(0, int)
    confusion = np.bincount(true * num_outputs + pred, minlength=num_outputs**2).reshape(num_outputs, num_outputs)
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    names = names or [str(k) for k in range(num_outputs)]
    per_class = {names[k]: float(tp[k] / union[k]) for k in range(num_outputs) if union[k] > 0}
    return {"miou": float(np.mean(list(per_class.values()))) if per_class else 0.0, "per_class_iou": per_class}


def _card_category_parts(card) -> list[list[int]] | None:
    """Each category's part ids, in class order (part segmentation only)."""
    return [card.category_parts[name] for name in card.class_names] if card.task == "part_segmentation" else None


def card_predictions(card, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """:func:`predictions` for a model card's task and category parts."""
    return predictions(card.task, logits, labels, _card_category_parts(card))


def card_task_metrics(card, predicted: np.ndarray, labels: np.ndarray, seg: np.ndarray | None) -> dict:
    """:func:`task_metrics` for a model card's task, class names and category parts, from predictions."""
    parts = _card_category_parts(card)
    names = list(card.part_names) if card.task == "semantic_segmentation" else None
    return task_metrics(card.task, predicted, labels, seg, card.class_names, parts, card.num_outputs, names)


def card_metrics(card, logits: np.ndarray, labels: np.ndarray, seg: np.ndarray | None) -> dict:
    """:func:`task_metrics` for a model card, from logits."""
    return card_task_metrics(card, card_predictions(card, logits, labels), labels, seg)
