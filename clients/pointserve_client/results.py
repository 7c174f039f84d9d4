"""Typed answers of a pointserve server: classification and segmentation results, v2 infer outputs, errors.

Shapes:
    SegmentationResult.labels:        (N,) int64, one label id per input point, in input order
    SegmentationResult.probabilities: (N, P) float64 when asked for
    InferResult.outputs[name]:        the tensor's own shape, e.g. logits (B, K) or (B, N, P)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class PointServeHTTPError(Exception):
    """The server answered with an error status; ``message`` is its ``{"error": ...}`` text."""

    def __init__(
        self, status_code: int, message: str, request_id: str | None = None, retry_after_s: float | None = None
    ):
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.request_id = request_id
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class ClassScore:
    class_id: int
    label: str
    score: float


@dataclass(frozen=True)
class ClassificationResult:
    """``label`` is the most likely class; ``top_k`` the best classes with their softmax scores."""

    model: str
    version: int
    class_id: int
    label: str
    score: float
    top_k: list[ClassScore]
    probabilities: dict[str, float] | None = None
    logits: list[float] | None = None
    request_id: str | None = field(default=None, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any], request_id: str | None = None) -> ClassificationResult:
        return cls(
            model=data["model"],
            version=int(data["version"]),
            class_id=int(data["class_id"]),
            label=data["label"],
            score=float(data["score"]),
            top_k=[ClassScore(int(c["class_id"]), c["label"], float(c["score"])) for c in data.get("top_k", [])],
            probabilities=data.get("probabilities"),
            logits=data.get("logits"),
            request_id=request_id,
        )


@dataclass(frozen=True)
class SegmentationResult:
    """A label for every input point (``labels[i]`` names ``label_names[labels[i]]``)."""

    model: str
    version: int
    labels: np.ndarray
    label_names: list[str]
    counts: dict[str, int]
    num_points: int
    num_processed_points: int
    resampled: bool
    category: str | None = None
    category_id: int | None = None
    probabilities: np.ndarray | None = None
    logits: np.ndarray | None = None
    request_id: str | None = field(default=None, compare=False)

    @property
    def point_labels(self) -> list[str]:
        """The label name of every point."""
        return [self.label_names[i] for i in self.labels]

    @classmethod
    def from_json(cls, data: dict[str, Any], request_id: str | None = None) -> SegmentationResult:
        probabilities = data.get("probabilities")
        logits = data.get("logits")
        return cls(
            model=data["model"],
            version=int(data["version"]),
            labels=np.asarray(data["labels"], dtype=np.int64),
            label_names=list(data["label_names"]),
            counts=dict(data["counts"]),
            num_points=int(data["num_points"]),
            num_processed_points=int(data["num_processed_points"]),
            resampled=bool(data["resampled"]),
            category=data.get("category"),
            category_id=data.get("category_id"),
            probabilities=np.asarray(probabilities, dtype=np.float64) if probabilities is not None else None,
            logits=np.asarray(logits, dtype=np.float32) if logits is not None else None,
            request_id=request_id,
        )


Result = ClassificationResult | SegmentationResult


def result_from_json(data: dict[str, Any], request_id: str | None = None) -> Result:
    """The typed form of one ``/v1/.../predict`` answer (classification has ``class_id``, segmentation ``labels``)."""
    head = {"model": data.get("model"), "version": data.get("version")}
    if "labels" in data:
        return SegmentationResult.from_json({**head, **data}, request_id)
    return ClassificationResult.from_json({**head, **data}, request_id)


@dataclass(frozen=True)
class InferResult:
    """An Open Inference Protocol (v2) answer: output tensors by name."""

    model_name: str
    model_version: str
    outputs: dict[str, np.ndarray]
    id: str | None = None


__all__ = [
    "ClassScore",
    "ClassificationResult",
    "InferResult",
    "PointServeHTTPError",
    "Result",
    "SegmentationResult",
    "result_from_json",
]
