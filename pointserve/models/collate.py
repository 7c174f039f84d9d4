"""How clouds of different sizes share one batch exactly: the collate policies an :class:`ArchitectureSpec` names.

Training, export parity, calibration, variant evaluation, the bench and the service all batch through
:func:`collate` and split answers with :func:`split`, so a network is always fed the way it was trained and
checked. (The service's batcher adds one rule of its own for ``bucket``: it only groups same-size clouds.)

* ``repeat``: each per-cloud array is padded to the largest cloud by cycling its own rows. Exact for
  max-pooled networks (a repeated point changes no maximum); per-point answers are the first n rows.
* ``concat``: per-point arrays are concatenated along their first dimension; ``index_inputs`` are offset by
  the cloud's start in the dimension they index (the sentinel, equal to the cloud's own size, becomes the
  batch total), per-cloud index rows (a leading ``batch`` axis) too, before they are padded by cycling;
  ``segment`` (cloud id per point) and ``segment_start`` (first point of each cloud) are
  generated when the graph takes them. Exact for neighbourhood networks whose neighbours never cross clouds.
* ``bucket``: arrays are stacked; every cloud of a batch must have the same size (kNN graphs change when a
  point repeats, so nothing is padded).

Shapes:
    per cloud:   ``points`` (n_i, C), index arrays (n_i, k), ``category`` ()
    repeat:      ``points`` (B, max n_i, C), ``category`` (B,)
    concat:      ``points`` (sum n_i, C), indices (sum n_i, k), ``segment`` (sum n_i,), ``segment_start`` (B,)
    outputs:     (B, K) split by row; (B, N, P) -> (n_i, P) (repeat, bucket); (sum n_i, P) -> (n_i, P) (concat)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pointserve.card import ModelCard
from pointserve.errors import InputError
from pointserve.models.spec import (
    BATCH_DIM,
    CATEGORY_INPUT,
    SEGMENT_INPUT,
    SEGMENT_START_INPUT,
    ArchitectureSpec,
    TensorSpec,
)

_GENERATED = (SEGMENT_INPUT, SEGMENT_START_INPUT)


@dataclass(frozen=True)
class BatchLayout:
    """Where each cloud is in a collated batch: its size in every symbolic dimension, and the policy."""

    policy: str
    sizes: tuple[dict[str, int], ...]

    @property
    def batch_size(self) -> int:
        return len(self.sizes)

    def offsets(self, dim: str) -> np.ndarray:
        """(B + 1,) start of each cloud along ``dim`` in a concatenated batch, and the total last."""
        counts = [s.get(dim, 0) for s in self.sizes]
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def cloud_inputs(
    spec: ArchitectureSpec, card: ModelCard, points: np.ndarray, category: int | None = None
) -> dict[str, np.ndarray]:
    """One normalised cloud (N, C) -> its named arrays: the family's preprocessor plus the category."""
    arrays = dict(spec.preprocess(points, card))
    if card.needs_category:
        if category is None:
            raise InputError(f"{spec.name} needs the object category")
        arrays[CATEGORY_INPUT] = np.asarray(category, dtype=np.int64)
    return arrays


def _per_cloud_dims(spec_: TensorSpec, policy: str) -> list[int | str]:
    """The dimensions of one cloud's array for a graph input: without the batch axis unless concatenated."""
    if spec_.shape and spec_.shape[0] == BATCH_DIM:
        return list(spec_.shape[1:])
    if policy != "concat":
        raise ValueError(f"input {spec_.name!r}: only the concat policy takes inputs without a leading batch axis")
    return list(spec_.shape)


def _sizes(specs: Sequence[TensorSpec], policy: str, cloud: Mapping[str, np.ndarray], index: int) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for spec_ in specs:
        if spec_.name in _GENERATED:
            continue
        if spec_.name not in cloud:
            raise InputError(f"cloud {index}: no array for graph input {spec_.name!r}")
        array = cloud[spec_.name]
        dims = _per_cloud_dims(spec_, policy)
        if array.ndim != len(dims):
            raise InputError(f"cloud {index}: {spec_.name!r} has shape {array.shape}, expected {dims}")
        for dim, size in zip(dims, array.shape, strict=True):
            if isinstance(dim, int):
                if dim != size:
                    raise InputError(f"cloud {index}: {spec_.name!r} has shape {array.shape}, expected {dims}")
            elif sizes.setdefault(dim, size) != size:
                raise InputError(f"cloud {index}: dimension {dim!r} is {sizes[dim]} in one input and {size} in another")
    return sizes


def _cycle(array: np.ndarray, length: int) -> np.ndarray:
    n = len(array)
    return array if n == length else array[np.arange(length) % n]


def collate(
    spec: ArchitectureSpec, card: ModelCard, clouds: Sequence[Mapping[str, np.ndarray]]
) -> tuple[dict[str, np.ndarray], BatchLayout]:
    """Per-cloud arrays (from :func:`cloud_inputs`) -> the graph's feeds for one batch, and the layout."""
    if not clouds:
        raise ValueError("collate needs at least one cloud")
    policy = spec.collate
    specs = spec.inputs(card)
    fixed = spec.fixed_sizes(card)
    sizes = tuple({**fixed, **_sizes(specs, policy, cloud, i)} for i, cloud in enumerate(clouds))
    layout = BatchLayout(policy, sizes)
    feeds: dict[str, np.ndarray] = {}
    for spec_ in specs:
        dtype = spec_.numpy_dtype
        if spec_.name == SEGMENT_INPUT:
            counts = [s[_first_symbolic(spec_)] for s in sizes]
            feeds[spec_.name] = np.repeat(np.arange(len(clouds), dtype=dtype), counts)
            continue
        if spec_.name == SEGMENT_START_INPUT:
            feeds[spec_.name] = layout.offsets(_segment_dim(specs))[:-1].astype(dtype)
            continue
        arrays = [np.asarray(cloud[spec_.name]) for cloud in clouds]
        batched = spec_.shape and spec_.shape[0] == BATCH_DIM
        if policy == "concat" and not batched:
            if spec_.name in spec.index_inputs:
                arrays = _offset_indices(arrays, spec.index_inputs[spec_.name], layout, spec_.name)
            feeds[spec_.name] = np.ascontiguousarray(np.concatenate(arrays), dtype=dtype)
            continue
        if policy == "concat" and spec_.name in spec.index_inputs:
            # Per-cloud rows (e.g. a cloud's points to pool): offset, then padded by repeating the cloud's own.
            arrays = _offset_indices(arrays, spec.index_inputs[spec_.name], layout, spec_.name)
        leading = spec_.shape[1] if len(spec_.shape) > 1 else None
        if isinstance(leading, str):
            longest = max(s[leading] for s in sizes)
            if policy == "bucket" and any(s[leading] != longest for s in sizes):
                raise InputError(f"{spec.name} batches only clouds of one size (bucket policy); got {_counts(sizes)}")
            arrays = [_cycle(a, longest) for a in arrays]
        feeds[spec_.name] = np.ascontiguousarray(np.stack(arrays), dtype=dtype)
    return feeds, layout


def _first_symbolic(spec_: TensorSpec) -> str:
    return next(d for d in spec_.shape if isinstance(d, str))


def _segment_dim(specs: Sequence[TensorSpec]) -> str:
    """The dimension ``segment_start`` refers to: that of ``segment`` if declared, else ``num_points``."""
    for spec_ in specs:
        if spec_.name == SEGMENT_INPUT:
            return _first_symbolic(spec_)
    return "num_points"


def _counts(sizes: Sequence[dict[str, int]]) -> list[int]:
    return [max(s.values(), default=0) for s in sizes]


def _offset_indices(arrays: list[np.ndarray], dim: str, layout: BatchLayout, name: str) -> list[np.ndarray]:
    starts = layout.offsets(dim)
    total = int(starts[-1])
    shifted = []
    for i, array in enumerate(arrays):
        own = layout.sizes[i].get(dim)
        if own is None:
            raise InputError(f"{name!r} indexes dimension {dim!r}, which no per-cloud input of cloud {i} has")
        values = array.astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > own):
            raise InputError(f"{name!r} of cloud {i} holds indices outside [0, {own}] (sentinel {own})")
        shifted.append(np.where(values == own, total, values + starts[i]))
    return shifted


def split(
    spec: ArchitectureSpec, card: ModelCard, outputs: Mapping[str, np.ndarray], layout: BatchLayout
) -> list[dict[str, np.ndarray]]:
    """The graph's outputs for a batch -> one dict of outputs per cloud, in batch order."""
    per_cloud: list[dict[str, np.ndarray]] = [{} for _ in layout.sizes]
    for spec_ in spec.outputs(card):
        value = outputs[spec_.name]
        if spec_.shape and spec_.shape[0] == BATCH_DIM:
            if len(value) != layout.batch_size:
                raise InputError(f"output {spec_.name!r} has {len(value)} rows for {layout.batch_size} clouds")
            inner = spec_.shape[1] if len(spec_.shape) > 1 else None
            for i, sizes in enumerate(layout.sizes):
                per_cloud[i][spec_.name] = value[i, : sizes[inner]] if isinstance(inner, str) else value[i]
            continue
        dim = spec_.shape[0]
        starts = layout.offsets(dim)
        for i in range(layout.batch_size):
            per_cloud[i][spec_.name] = value[starts[i] : starts[i + 1]]
    return per_cloud


def batch_inputs(
    spec: ArchitectureSpec, card: ModelCard, clouds: Sequence[np.ndarray], categories: Sequence[int] | None = None
) -> tuple[dict[str, np.ndarray], BatchLayout]:
    """Normalised clouds (each (n_i, C)) and their categories -> feeds and layout (preprocess + collate)."""
    categories = list(categories) if categories is not None else [None] * len(clouds)
    per_cloud = [cloud_inputs(spec, card, c, k) for c, k in zip(clouds, categories, strict=True)]
    return collate(spec, card, per_cloud)


def first_output_per_cloud(
    run: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]],
    spec: ArchitectureSpec,
    card: ModelCard,
    clouds: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
) -> np.ndarray:
    """The first graph output (the logits) of every cloud, batched through the preprocessor and collate policy.

    ``run`` maps feeds to outputs by name (a runner's ``infer``, an ONNX Runtime session); ``labels`` are the
    clouds' categories, fed when the card needs them.

    Shapes:
        clouds (S, N, C), labels (S,) -> (S, K) or (S, N, P)
    """
    output = spec.outputs(card)[0].name
    logits: list[np.ndarray] = []
    for start in range(0, len(clouds), batch_size):
        stop = start + batch_size
        categories = labels[start:stop].tolist() if card.needs_category else None
        feeds, layout = batch_inputs(spec, card, list(clouds[start:stop]), categories)
        logits.extend(cloud[output] for cloud in split(spec, card, run(feeds), layout))
    return np.stack(logits)


def random_clouds(card: ModelCard, batch: int, num_points: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``batch`` random clouds of ``num_points`` points, normalised as the card says (parity checks, bench)."""
    from pointserve.data.transforms import normalize

    clouds = rng.standard_normal((batch, num_points, card.in_channels)).astype(np.float32)
    return [normalize(c, card.normalization).astype(np.float32) for c in clouds]


def random_feeds(
    spec: ArchitectureSpec, card: ModelCard, batch: int, num_points: int, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], BatchLayout]:
    """Feeds for ``batch`` random clouds of ``num_points`` points (and random categories)."""
    clouds = random_clouds(card, batch, num_points, rng)
    categories = rng.integers(0, len(card.class_names), size=batch).tolist() if card.needs_category else None
    return batch_inputs(spec, card, clouds, categories)


__all__ = [
    "BatchLayout",
    "batch_inputs",
    "cloud_inputs",
    "collate",
    "first_output_per_cloud",
    "random_clouds",
    "random_feeds",
    "split",
]
