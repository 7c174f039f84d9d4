"""The pcn family (Jack et al., "Sparse Convolutions on Continuous Domains for Point Cloud and Event Stream
Networks", ACCV 2020): ``pcn_cls`` (the reference's "large" ResNet), ``pcn_cls_small`` (sized for training on
2 CPU cores), ``pcn_seg`` and ``pcn_partseg``.

This file is the family's registration. The preprocessor computes the four cloud levels and their padded
neighbour lists on the CPU (:func:`pointserve.geometry.sample_hierarchy`) from the normalised cloud; clouds
share a batch with the ``concat`` policy (every level concatenated, indices offset per cloud, padding pointing
one past the batch's points); the training augmentation is pcn's own
(:func:`pointserve.data.transforms.pcn_augment`). The operator is :mod:`pointserve.models.pcn.conv`, the networks
:mod:`pointserve.models.pcn.network` (imported, with torch, only when a model is built).

Hyper-parameters come from a preset (``model_options: {preset: large | small}``), each setting overridable
through ``model_options``; radii are in the units of the unit-sphere normalisation the card applies.

Shapes (one cloud of n_l points at level l, before collation):
    points (n_0, C), neighbors_l (n_l, k), sample_l (n_l,), down_l (n_l, k_down), up_l (n_l, k_up),
    pool (n_3,); logits (K,) per cloud or (n_0, P) per point
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pointserve.card import ModelCard
from pointserve.data.transforms import pcn_augment
from pointserve.geometry import sample_hierarchy
from pointserve.models.registry import register_architecture
from pointserve.models.spec import (
    BATCH_DIM,
    CATEGORY_INPUT,
    POINTS_DIM,
    POINTS_INPUT,
    SEGMENT_INPUT,
    ArchitectureSpec,
    TensorSpec,
    logits_outputs,
)

NUM_LEVELS = 4
LEVEL_DIMS = (POINTS_DIM, "points_1", "points_2", "points_3")
POOL_INPUT = "pool"
POOL_DIM = "pool_size"  # the longest cloud's coarsest level: pool rows of shorter clouds repeat their points

# The reference's "large" ModelNet40 network, and one sized for a few minutes per epoch on 2 cores with the
# 256-point shapes clouds (fewer points per unit area, so larger radii keep a few neighbours in each ball).
PRESETS: dict[str, dict[str, Any]] = {
    "large": {
        "r0": 0.1125,
        "in_place_k": 64,
        "down_sample_k": 128,
        "up_sample_k": 16,
        "widths": [32, 64, 128, 256],
        "global_width": 1024,
        "head_width": 256,
        "dropout": 0.5,
        "block_dropout": 0.5,
    },
    "small": {
        "r0": 0.2,
        "in_place_k": 32,
        "down_sample_k": 64,
        "up_sample_k": 16,
        "widths": [16, 32, 64, 128],
        "global_width": 256,
        "head_width": 128,
        "dropout": 0.3,
        "block_dropout": 0.1,
    },
}
_GEOMETRY_KEYS = ("r0", "in_place_k", "down_sample_k", "up_sample_k")
_NETWORK_KEYS = ("widths", "global_width", "head_width", "dropout", "block_dropout")


def _settings(options: Mapping[str, Any], default_preset: str) -> dict[str, Any]:
    preset = options.get("preset", default_preset)
    if preset not in PRESETS:
        raise ValueError(f"unknown pcn preset {preset!r}; one of {sorted(PRESETS)}")
    return {**PRESETS[preset], **{k: options[k] for k in (*_GEOMETRY_KEYS, *_NETWORK_KEYS) if k in options}}


def radii(r0: float) -> list[float]:
    """The in-place radius of each level: r0 doubling per level, as in the reference."""
    return [float(r0) * 2**level for level in range(NUM_LEVELS)]


def _preprocessing(default_preset: str):
    def preprocessing(options: Mapping[str, Any]) -> dict[str, Any]:
        settings = _settings(options, default_preset)
        return {
            "radii": radii(settings["r0"]),
            "in_place_k": int(settings["in_place_k"]),
            "down_sample_k": int(settings["down_sample_k"]),
            "up_sample_k": int(settings["up_sample_k"]),
        }

    return preprocessing


def _model_config(default_preset: str, task: str):
    def model_config(dataset, options: Mapping[str, Any]) -> dict[str, Any]:
        settings = _settings(options, default_preset)
        config = {
            "in_channels": dataset.in_channels,
            "radii": radii(settings["r0"]),
            **{k: settings[k] for k in _NETWORK_KEYS},
        }
        if task == "classification":
            return {"num_classes": len(dataset.class_names), **config}
        config["num_parts"] = len(dataset.part_names)
        if task == "part_segmentation":
            config["num_categories"] = len(dataset.class_names)
        return config

    return model_config


def _ks(card: ModelCard) -> tuple[int, int, int]:
    p = card.preprocessing
    return int(p["in_place_k"]), int(p["down_sample_k"]), int(p["up_sample_k"])


def _inputs(card: ModelCard) -> list[TensorSpec]:
    k, k_down, k_up = _ks(card)
    specs = [
        TensorSpec(name=POINTS_INPUT, dtype="float32", shape=[POINTS_DIM, card.in_channels]),
        TensorSpec(name="neighbors_0", dtype="int64", shape=[POINTS_DIM, k]),
    ]
    for level in range(1, NUM_LEVELS):
        dim = LEVEL_DIMS[level]
        specs += [
            TensorSpec(name=f"sample_{level}", dtype="int64", shape=[dim]),
            TensorSpec(name=f"down_{level}", dtype="int64", shape=[dim, k_down]),
            TensorSpec(name=f"neighbors_{level}", dtype="int64", shape=[dim, k]),
        ]
    specs.append(TensorSpec(name=POOL_INPUT, dtype="int64", shape=[BATCH_DIM, POOL_DIM]))
    if card.task != "classification":
        specs += [
            TensorSpec(name=f"up_{level}", dtype="int64", shape=[LEVEL_DIMS[level], k_up])
            for level in range(NUM_LEVELS - 1)
        ]
        specs.append(TensorSpec(name=SEGMENT_INPUT, dtype="int64", shape=[POINTS_DIM]))
    if card.needs_category:
        specs.append(TensorSpec(name=CATEGORY_INPUT, dtype="int64", shape=[BATCH_DIM]))
    return specs


def _outputs(card: ModelCard) -> list[TensorSpec]:
    if card.task == "classification":
        return logits_outputs(card)
    return [TensorSpec(name="logits", dtype="float32", shape=[POINTS_DIM, card.num_outputs])]


def _index_inputs() -> dict[str, str]:
    """Which level each index input points into (the concat policy offsets them per cloud)."""
    index = {"neighbors_0": POINTS_DIM, POOL_INPUT: LEVEL_DIMS[-1]}
    for level in range(1, NUM_LEVELS):
        index[f"sample_{level}"] = index[f"down_{level}"] = LEVEL_DIMS[level - 1]
        index[f"neighbors_{level}"] = LEVEL_DIMS[level]
    for level in range(NUM_LEVELS - 1):
        index[f"up_{level}"] = LEVEL_DIMS[level + 1]
    return index


def preprocess(points: np.ndarray, card: ModelCard) -> dict[str, np.ndarray]:
    """One normalised cloud (n, C) -> its levels' neighbour lists (see the module docstring for the names)."""
    p = card.preprocessing
    k, k_down, k_up = _ks(card)
    segmenting = card.task != "classification"
    levels = sample_hierarchy(
        points[:, :3], p["radii"], in_place_k=k, down_sample_k=k_down, up_sample_k=k_up if segmenting else None
    )
    arrays: dict[str, np.ndarray] = {POINTS_INPUT: np.asarray(points, dtype=np.float32)}
    for level, cloud in enumerate(levels):
        arrays[f"neighbors_{level}"] = cloud.in_place
        if level:
            arrays[f"sample_{level}"] = cloud.sample
            arrays[f"down_{level}"] = cloud.down
        if segmenting and level < NUM_LEVELS - 1:
            arrays[f"up_{level}"] = cloud.up
    arrays[POOL_INPUT] = np.arange(levels[-1].size, dtype=np.int64)
    return arrays


def _build(kind: str):
    def build(**config: Any):
        from pointserve.models.pcn import network

        return getattr(network, kind)(**config)

    return build


def _parity_shapes(card: ModelCard) -> list[tuple[int, int]]:
    """(B, N) pairs for the export check: the training size, odd sizes, one point, and a bigger batch."""
    return list(dict.fromkeys([(1, card.num_points), (4, 300), (3, 777), (2, 2 * card.num_points), (1, 1)]))


def _register(name: str, task, kind: str, preset: str, description: str) -> ArchitectureSpec:
    return register_architecture(
        ArchitectureSpec(
            name=name,
            task=task,
            builder=_build(kind),
            model_config=_model_config(preset, task),
            inputs=_inputs,
            outputs=_outputs,
            preprocess=preprocess,
            collate="concat",
            index_inputs=_index_inputs(),
            preprocessing=_preprocessing(preset),
            augment=pcn_augment,
            parity_shapes=_parity_shapes,
            description=description,
        )
    )


PCN_CLS = _register(
    "pcn_cls", "classification", "PcnClassifier", "large", "pcn ResNet classifier, the reference's large preset"
)
PCN_CLS_SMALL = _register(
    "pcn_cls_small", "classification", "PcnClassifier", "small", "pcn ResNet classifier sized for 2-core training"
)
PCN_SEG = _register(
    "pcn_seg", "semantic_segmentation", "PcnSegmenter", "small", "pcn encoder-decoder: a label per point"
)
PCN_PARTSEG = _register(
    "pcn_partseg", "part_segmentation", "PcnPartSegmenter", "small", "pcn part segmentation (+ object category)"
)

__all__ = ["LEVEL_DIMS", "NUM_LEVELS", "PRESETS", "preprocess", "radii"]
