"""The contract between a network family and every later stage: :class:`ArchitectureSpec`.

A family registers one spec per architecture (``pointnet_cls``, ...). Training, export, calibration, the
engines, the bench and the service read the spec and never name a family: what the graph takes and gives
(named :class:`TensorSpec` s with symbolic dimensions), how one raw cloud becomes those arrays on the CPU
(the **preprocessor**), how clouds of different sizes share one batch *exactly* (the **collate policy**),
the auxiliary training loss, and which nodes int8 keeps in float.

Importing this module imports neither torch nor onnx: builders and loss functions import torch when called.

Shapes (the symbolic dimensions every family uses):
    ``batch``       B, clouds in a batch
    ``num_points``  N, points per cloud (``repeat`` / ``bucket``) or all points of the batch (``concat``)
    per-cloud arrays from a preprocessor keep their own leading size (N, or any dimension the spec names)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from pointserve.card import ModelCard, Normalization, Task

if TYPE_CHECKING:
    from pointserve.data.base import PointCloudDataset

BATCH_DIM = "batch"
POINTS_DIM = "num_points"
POINTS_INPUT = "points"
CATEGORY_INPUT = "category"
LOGITS_OUTPUT = "logits"
# concat policy: inputs it generates when the graph declares them.
SEGMENT_INPUT = "segment"  # (num_points,) int64: the cloud each point belongs to
SEGMENT_START_INPUT = "segment_start"  # (batch,) int64: index of each cloud's first point

CollatePolicy = Literal["repeat", "concat", "bucket"]
COLLATE_POLICIES: tuple[CollatePolicy, ...] = ("repeat", "concat", "bucket")
DType = Literal["float32", "float16", "int64", "int32"]


class TensorSpec(BaseModel):
    """A named tensor; symbolic dimensions are strings (``"batch"``, ``"num_points"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    dtype: DType
    shape: list[int | str]

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)


Preprocessor = Callable[[np.ndarray, ModelCard], dict[str, np.ndarray]]
SpecsFn = Callable[[ModelCard], list[TensorSpec]]
# (points (N, C), rng, per-point labels (N,) or None) -> augmented (points (M, C), labels (M,) or None)
Augmentation = Callable[[np.ndarray, np.random.Generator, "np.ndarray | None"], tuple[np.ndarray, "np.ndarray | None"]]


def default_augmentation(points: np.ndarray, rng: np.random.Generator, seg: np.ndarray | None = None):
    """The PointNet recipe (:func:`pointserve.data.transforms.augment`): up-axis rotation, scale, jitter, shuffle,
    point dropout (classification only)."""
    from pointserve.data.transforms import augment

    return augment(points, rng, seg)


def identity_preprocessor(points: np.ndarray, card: ModelCard) -> dict[str, np.ndarray]:
    """The cloud as it is: ``{"points": (N, C)}`` (PointNet needs nothing computed on the CPU)."""
    return {POINTS_INPUT: points}


def default_parity_shapes(card: ModelCard) -> list[tuple[int, int]]:
    """(B, N) pairs: the training N, N = 1, and N never seen in training (odd, smaller, larger)."""
    return list(dict.fromkeys([(1, card.num_points), (4, 512), (3, 777), (2, 2048), (1, 1)]))


def request_specs(card: ModelCard) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """What a client sends and receives, whatever the family (the Open Inference Protocol's model metadata):
    raw ``points`` (B, N, C) (+ ``category`` (B,)) in, ``logits`` (B, K) or (B, N, P) with a row per input point."""
    return points_and_category_inputs(card), logits_outputs(card)


@dataclass(frozen=True)
class ArchitectureSpec:
    """Everything the pipeline needs to know about one architecture.

    * ``builder(**card.config)`` -> ``torch.nn.Module`` whose ``forward`` takes the graph inputs by name
      and returns the outputs (one tensor, or a tuple in ``outputs`` order).
    * ``model_config(dataset, options)`` -> the builder's config for a dataset and the training options
      (a plain mapping of the training config); ``preprocessing(options)`` -> the card's preprocessing
      parameters (radii, k, ...), read back by the preprocessor.
    * ``inputs(card)`` / ``outputs(card)``: the graph's tensors. Inputs whose first dimension is ``batch``
      hold one row per cloud; the others hold per-point (or per-sample) rows.
    * ``preprocess(points, card)``: one normalised cloud (N, C) -> its named arrays, CPU and numpy only
      (the category is added by the collate step from the request).
    * ``collate``: ``repeat`` (pad each cloud by cycling its own points: exact for max-pooled networks),
      ``concat`` (clouds concatenated along their point dimension, ``index_inputs`` offset per cloud,
      ``segment`` / ``segment_start`` generated), or ``bucket`` (only clouds of one size share a batch:
      networks whose answer changes when a point repeats, such as kNN graphs).
    * ``index_inputs``: input name -> the dimension its values index (for ``concat`` offsets). A value equal
      to the cloud's size in that dimension is the sentinel (a padded slot) and maps to the batch total.
    * ``augment(points, rng, seg)`` -> ``(points, seg)``: the training augmentation of one resampled cloud
      (before normalisation); it may change the number of points (pcn drops a random share of them).
    * ``auxiliary_loss(model, inputs)`` -> ``(outputs, loss)``: the training forward pass with its extra loss.
    * ``int8_float_nodes(graph, card)`` -> names of the ONNX nodes int8 keeps in float (a starting point).
    * ``fixed_sizes(card)`` -> per-cloud sizes of dimensions that no input carries but index inputs point into
      (a bird's-eye-view grid's ``cells``: H x W per cloud), for the ``concat`` offsets.
    * ``normalization``: what the card applies before the preprocessor (``none`` for metric LiDAR scans).
    * ``max_points``: points per cloud the engines take by default; ``None``: twice the training size (a LiDAR
      family trains on subsets of its scans but labels whole scans).
    """

    name: str
    task: Task
    builder: Callable[..., Any]
    model_config: Callable[[PointCloudDataset, Mapping[str, Any]], dict[str, Any]]
    inputs: SpecsFn
    outputs: SpecsFn
    preprocess: Preprocessor = identity_preprocessor
    collate: CollatePolicy = "repeat"
    index_inputs: Mapping[str, str] = field(default_factory=dict)
    preprocessing: Callable[[Mapping[str, Any]], dict[str, Any]] = lambda options: {}
    augment: Augmentation = default_augmentation
    auxiliary_loss: Callable[[Any, dict[str, Any]], tuple[Any, Any]] | None = None
    int8_float_nodes: Callable[[Any, ModelCard], list[str]] = lambda graph, card: []
    parity_shapes: Callable[[ModelCard], list[tuple[int, int]]] = default_parity_shapes
    fixed_sizes: Callable[[ModelCard], dict[str, int]] = lambda card: {}
    normalization: Normalization = "unit_sphere"
    max_points: int | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.collate not in COLLATE_POLICIES:
            raise ValueError(f"{self.name}: unknown collate policy {self.collate!r}; one of {COLLATE_POLICIES}")

    def input_names(self, card: ModelCard) -> list[str]:
        return [spec.name for spec in self.inputs(card)]

    def output_names(self, card: ModelCard) -> list[str]:
        return [spec.name for spec in self.outputs(card)]

    def build(self, card: ModelCard) -> Any:
        """The untrained module for a card's config (imports torch)."""
        return self.builder(**card.config)


def logits_outputs(card: ModelCard) -> list[TensorSpec]:
    """``logits`` (B, K) for classification, (B, N, P) per point for segmentation."""
    shape: list[int | str] = [BATCH_DIM, card.num_outputs]
    if card.task != "classification":
        shape = [BATCH_DIM, POINTS_DIM, card.num_outputs]
    return [TensorSpec(name=LOGITS_OUTPUT, dtype="float32", shape=shape)]


def point_cloud_inputs(channels: int = 3, needs_category: bool = False) -> list[TensorSpec]:
    """The inputs of a graph fed raw clouds: ``points`` (B, N, C) float32 (+ ``category`` (B,) int64)."""
    inputs = [TensorSpec(name=POINTS_INPUT, dtype="float32", shape=[BATCH_DIM, POINTS_DIM, int(channels)])]
    if needs_category:
        inputs.append(TensorSpec(name=CATEGORY_INPUT, dtype="int64", shape=[BATCH_DIM]))
    return inputs


def points_and_category_inputs(card: ModelCard) -> list[TensorSpec]:
    """``points`` (B, N, C), plus ``category`` (B,) for part segmentation."""
    return point_cloud_inputs(card.in_channels, card.needs_category)


__all__ = [
    "BATCH_DIM",
    "CATEGORY_INPUT",
    "COLLATE_POLICIES",
    "LOGITS_OUTPUT",
    "POINTS_DIM",
    "POINTS_INPUT",
    "SEGMENT_INPUT",
    "SEGMENT_START_INPUT",
    "ArchitectureSpec",
    "Augmentation",
    "CollatePolicy",
    "TensorSpec",
    "default_augmentation",
    "default_parity_shapes",
    "identity_preprocessor",
    "logits_outputs",
    "point_cloud_inputs",
    "points_and_category_inputs",
    "request_specs",
]
