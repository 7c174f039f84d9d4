"""One cloud on its way through the service: validation, normalisation, resampling, the family's
preprocessing, batching by the family's collate policy, and back.

Framework-free (no FastAPI, pydantic-settings or prometheus): the batching and preparation that the service,
and anything else serving clouds, share.

Shapes:
    request cloud:   (N, C) float32, raw coordinates as the client sent them
    Cloud.points:    (n, C) float32, normalised with the model card's method; n = N unless resampled
    Cloud.inputs:    the family's per-cloud arrays (e.g. {"points": (n, C)}, + {"category": ()})
    logits per cloud: (K,) classification, (n, P) segmentation
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import orjson

from pointserve.card import ModelCard
from pointserve.data.transforms import normalize, resample_indices
from pointserve.engines.base import Runner
from pointserve.errors import EngineError, InputError, PayloadTooLargeError
from pointserve.models.collate import cloud_inputs, collate, split
from pointserve.models.spec import ArchitectureSpec
from pointserve.service.core.statistics import BatchPhases

# Fixed seed: the same oversized cloud is always resampled the same way (answers are reproducible).
RESAMPLE_SEED = 0


@dataclass(slots=True)
class Cloud:
    """A validated, normalised, preprocessed cloud ready for the batcher (``cost`` = its points, for the
    batch budget)."""

    points: np.ndarray
    category: int | None = None
    kept: np.ndarray | None = None  # indices (into the request's cloud) of the processed points, if resampled
    source_xyz: np.ndarray | None = None  # the whole normalised cloud's xyz, kept only when resampled
    inputs: dict[str, np.ndarray] | None = None  # the family's per-cloud arrays (graph inputs before collation)

    @property
    def num_input_points(self) -> int:
        return len(self.source_xyz) if self.source_xyz is not None else len(self.points)

    @property
    def cost(self) -> int:
        return len(self.points)


# ------------------------------------------------------------------------------------------- the input rules
# One text per rule, raised by every decoder (v1 JSON, binary, .npy, uploaded files, query and form options; v2
# JSON and binary tensors) through these functions: a message names the place in that encoding first
# ("points[5][1]: ...", "instances[2].points: ...", "chair.ply: ...", "input 'points'[0]: ...",
# "instances[0].category must ...") and the rest, the reason, is the same text from every path.
EMPTY_CLOUD = "the point cloud is empty (0 points)"
NOT_FINITE = "NaN, infinite, or beyond float32's range (±3.4e38); coordinates must be finite float32 numbers"
FOUND_BOOLEANS = "booleans (true/false)"


def refuse(where: str | None, reason: str, error: type[InputError] = InputError) -> InputError:
    """The error of a rule: ``"<where>: <reason>"`` (just the reason when there is no place to name)."""
    return error(f"{where}: {reason}" if where else reason)


def not_numbers(found: str) -> str:
    return f"must contain only numbers, found {found}"


def wrong_coordinates(channels: int, got: int) -> str:
    return f"each point must have {channels} coordinates, got {got}"


def not_a_cloud(channels: int, shape: tuple[int, ...]) -> str:
    return (
        f"must be a list of points, each with {channels} coordinates (an (N, {channels}) array), "
        f"got shape {tuple(shape)}"
    )


def too_many_clouds(count: int | str, limit: int) -> str:
    return f"a request may hold 1 to {limit} clouds, got {count}"


def found_in(array: np.ndarray) -> str:
    """What a non-numeric array holds, in the client's words (error path only: may look at every value)."""
    if array.dtype.kind == "b" or (array.dtype.kind == "O" and any(type(v) is bool for v in array.flat)):
        return FOUND_BOOLEANS
    if array.dtype.kind in "US" or (array.dtype.kind == "O" and any(isinstance(v, str) for v in array.flat)):
        return "text"
    return "values that are not numbers (null, lists or objects)"


def holds_booleans(value: object) -> bool:
    """Whether nested JSON lists hold a boolean anywhere: numpy silently turns ``true`` into 1 beside numbers.

    C loops per nesting level (``chain`` flattens a level of lists, one ``set(map(type, ...))`` looks at the
    numbers), no per-value Python code; callers run it only when the body holds a ``true`` / ``false`` token.
    """
    level = value if isinstance(value, list) else [value]
    while level:
        nested = None
        if type(level[0]) is list:
            try:  # a level of lists (the rows of a cloud): flattened without looking at each
                nested = list(chain.from_iterable(level))
            except TypeError:  # numbers (or booleans) among the lists
                nested = None
        if nested is None:
            types = set(map(type, level))
            if bool in types:
                return True
            if list not in types:
                return False
            nested = list(chain.from_iterable(v for v in level if type(v) is list))
        level = nested
    return False


def check_points(
    points: np.ndarray, *, channels: int, min_points: int, max_points: int, where: str | None = "points"
) -> np.ndarray:
    """Refuse anything that is not a finite (N, C) cloud of numbers with min_points <= N <= max_points, whose
    shape float32 can hold; returns it as float32.

    The one cloud check of every encoding; ``where`` names the cloud in the client's request. Vectorised: an
    accepted cloud costs a few passes over its values (no per-point Python).
    """
    if points.ndim != 2:
        raise refuse(where, not_a_cloud(channels, points.shape))
    num_points, got_channels = points.shape
    if num_points == 0:
        raise refuse(where, EMPTY_CLOUD)
    if got_channels != channels:
        raise refuse(where, wrong_coordinates(channels, got_channels))
    if points.dtype.kind not in "fiu":
        raise refuse(where, not_numbers(found_in(points)))
    if num_points < min_points:
        raise refuse(where, f"the cloud has {num_points} points; this model needs at least {min_points}")
    if num_points > max_points:
        raise refuse(
            where, f"the cloud has {num_points} points, more than the limit of {max_points}", PayloadTooLargeError
        )
    sent = points
    if points.dtype != np.float32:
        with np.errstate(over="ignore", invalid="ignore"):
            points = points.astype(np.float32)  # float64 beyond float32's range becomes inf, refused below
    finite = np.isfinite(points)
    if not finite.all():
        row, column = (int(i) for i in np.argwhere(~finite)[0])
        raise refuse(f"{where or 'points'}[{row}][{column}]", NOT_FINITE)
    low, high = _axis_bounds(sent)
    if sent is not points:  # before the float32 cast too, which merges such points into one
        _check_span(low, high, where)
        # Rounding to float32 keeps the order of values, so the cast cloud's bounds are these bounds, rounded.
        low, high = (bounds.astype(np.float32).astype(np.float64) for bounds in (low, high))
    _check_span(low, high, where)
    return points


# float32 keeps 24 bits: a cloud spanning less than 2^-20 of its distance from the origin keeps at most 4 bits of
# its own shape, and its points merge when they are sent or normalised.
_MIN_RELATIVE_EXTENT = 2.0**-20


def _axis_bounds(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The smallest and largest x, y, z (float64). One strided min and max per axis: numpy's axis-0 reductions
    of an (N, 3) array are 20x slower."""
    columns = [points[:, i] for i in range(min(3, points.shape[1]))]
    low = np.array([c.min() for c in columns], dtype=np.float64)
    high = np.array([c.max() for c in columns], dtype=np.float64)
    return low, high


def _check_span(low: np.ndarray, high: np.ndarray, where: str | None) -> None:
    """Refuse a cloud (given by its axis bounds) whose shape float32 cannot hold: its span (the largest of its
    x, y, z extents) tiny compared with its distance from the origin (its largest coordinate)."""
    magnitude = float(np.maximum(np.abs(low), np.abs(high)).max())
    extent = float((high - low).max())
    if 0 < extent < magnitude * _MIN_RELATIVE_EXTENT:
        raise refuse(
            where,
            f"the cloud spans {extent:.3g} but lies {magnitude:.3g} from the origin: float32 keeps about 7 digits, "
            "so its points would merge; send coordinates relative to a nearby origin (e.g. subtract the centroid)",
        )


# -------------------------------------------------------------------------------------------------- options
def option_value(value: Any) -> Any:
    """An option as JSON would carry it: text (a query string, a form field, a JSON string) that reads as JSON
    is that value (``"3"`` -> 3, ``"true"`` -> True, ``"1e30"`` -> 1e30), so each option has one rule whatever
    the encoding; any other value is itself."""
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def shown(value: Any) -> str:
    """A value as the client wrote it, in JSON's spelling (``true``, ``1e30``, ``'many'``), cut to 32 characters."""
    if isinstance(value, str):
        return repr(value[:32])
    if isinstance(value, np.generic):
        value = value.item()
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = type(value).__name__
    return text[:32]


def whole_number(value: Any) -> int | None:
    """An integer, or a float that is one (JSON does not tell 3 from 3.0, and orjson reads integers past 64 bits
    as floats); None for anything else (booleans included)."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    return None


def check_category(value: Any, where: str = "category") -> int | str | None:
    """The category's type rule: a name (text) or an integer id, never a boolean; names and ids are looked up
    against the model's categories later (``ServedModel.category_id``)."""
    value = option_value(value)
    if value is None or isinstance(value, str):
        return value
    number = whole_number(value)
    if number is None:
        raise InputError(f"{where} must be a name or an id, got {shown(value)}")
    return number


def prepare_cloud(
    points: np.ndarray,
    *,
    spec: ArchitectureSpec,
    card: ModelCard,
    max_processed_points: int,
    category: int | None = None,
) -> Cloud:
    """Normalise the whole cloud as the card says, resample it to ``max_processed_points`` if it is larger,
    then run the family's preprocessor.

    Normalising before resampling keeps the centroid and radius of every point the client sent.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        normalized = normalize(points, card.normalization)
    if not np.isfinite(normalized).all():
        raise InputError("the cloud overflowed float32 when normalised; send coordinates nearer the origin")
    if len(normalized) <= max_processed_points:
        cloud = Cloud(np.ascontiguousarray(normalized, dtype=np.float32), category)
    else:
        kept = resample_indices(len(normalized), max_processed_points, np.random.default_rng(RESAMPLE_SEED))
        processed = np.ascontiguousarray(normalized[kept], dtype=np.float32)
        cloud = Cloud(processed, category, kept=kept, source_xyz=np.ascontiguousarray(normalized[:, :3]))
    cloud.inputs = cloud_inputs(spec, card, cloud.points, category)
    return cloud


def group_key(spec: ArchitectureSpec, cloud: Cloud) -> int | None:
    """Which clouds may share a batch: any (None), or for the ``bucket`` policy only those of one size."""
    return len(cloud.points) if spec.collate == "bucket" else None


def run_batch(
    spec: ArchitectureSpec, card: ModelCard, runner: Runner, clouds: list[Cloud], phases: BatchPhases | None = None
) -> list[np.ndarray]:
    """Collate the clouds by the family's policy, infer, and split the first output (the logits) per cloud;
    ``phases`` (the instance's statistics) gets the three steps' times of a successful batch.

    Shapes: returns (K,) or (n_i, P) per cloud.
    """
    started = time.perf_counter_ns()
    feeds, layout = collate(spec, card, [cloud.inputs for cloud in clouds])
    collated = time.perf_counter_ns()
    outputs = runner.infer(feeds)
    inferred = time.perf_counter_ns()
    name = runner.output_names[0]
    try:
        per_cloud = split(spec, card, outputs, layout)
    except InputError as exc:  # the engine answered the wrong shape: the server's fault, not the client's
        raise EngineError(f"runner {runner.name!r}: {exc}") from None
    logits = [answers[name] for answers in per_cloud]
    if phases is not None:
        phases.add(len(clouds), collated - started, inferred - collated, time.perf_counter_ns() - inferred)
    return logits


def source_rows(cloud: Cloud) -> np.ndarray | None:
    """For a resampled cloud: for every input point, the processed point whose answer it takes (itself when it
    was processed, else its nearest processed neighbour in xyz). ``None`` when nothing was resampled.

    Shapes: returns (N,) int64 indices into the processed points.
    """
    if cloud.kept is None or cloud.source_xyz is None:
        return None
    from scipy.spatial import cKDTree  # a k-d tree: N log n instead of N x n distances

    rows = np.empty(len(cloud.source_xyz), dtype=np.int64)
    rows[cloud.kept] = np.arange(len(cloud.kept))
    missing = np.ones(len(cloud.source_xyz), dtype=bool)
    missing[cloud.kept] = False
    if missing.any():
        tree = cKDTree(cloud.source_xyz[cloud.kept])
        _, nearest = tree.query(cloud.source_xyz[missing], k=1)
        rows[missing] = nearest
    return rows
