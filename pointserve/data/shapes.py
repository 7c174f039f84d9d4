"""The built-in synthetic ``shapes`` dataset: objects assembled from named parametric parts, no download.

Every object is made of named parts (a table is a top and legs, a mug a body and a handle, ...), so the same
data serves classification (the object class) and part segmentation (a part label per point, ShapeNet-style:
each category owns a consecutive range of global part ids). Samples are generated deterministically from
``(seed, split, index)``, and vary in proportions, rotation about the up axis (y), sampling density per part,
noise, outliers and missing regions (partial scans). Several classes are built to be confusable (table/bench,
chair/stool, mug/vase, bottle/rocket, lamp/umbrella) so that a good model does not reach 100%.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pointserve.data.base import PointCloudDataset, Sample
from pointserve.data.primitives import Box, Ellipsoid, Frustum, Primitive, TorusArc
from pointserve.data.registry import register_dataset
from pointserve.errors import ConfigError

PartList = list[tuple[str, list[Primitive]]]
_SPLIT_STREAM = {"train": 0, "test": 1, "val": 2}


def _legs(rng, half_x: float, half_z: float, height: float, radius: float, count: int = 4) -> list[Primitive]:
    if count == 3:
        angles = rng.uniform(0, 2 * np.pi) + np.arange(3) * 2 * np.pi / 3
        spots = [(half_x * np.cos(a), half_z * np.sin(a)) for a in angles]
    else:
        spots = [(sx * half_x, sz * half_z) for sx in (-1, 1) for sz in (-1, 1)]
    return [Frustum((x, 0.0, z), radius, radius, height, cap_bottom=False) for x, z in spots]


def _table(rng) -> PartList:
    w, d, h = rng.uniform(0.9, 1.6), rng.uniform(0.6, 1.1), rng.uniform(0.55, 0.85)
    t = rng.uniform(0.03, 0.08)
    if rng.random() < 0.25:  # pedestal table
        legs: list[Primitive] = [Frustum((0, 0, 0), 0.25 * d, 0.06, h, cap_top=False)]
    else:
        legs = _legs(rng, 0.42 * w, 0.4 * d, h, rng.uniform(0.025, 0.05))
    return [("top", [Box((0, h + t / 2, 0), (w, t, d))]), ("leg", legs)]


def _bench(rng) -> PartList:
    w, d, h = rng.uniform(1.3, 2.2), rng.uniform(0.3, 0.6), rng.uniform(0.35, 0.6)
    t = rng.uniform(0.04, 0.09)
    return [
        ("seat", [Box((0, h + t / 2, 0), (w, t, d))]),
        ("leg", _legs(rng, 0.44 * w, 0.35 * d, h, rng.uniform(0.03, 0.06))),
    ]


def _chair(rng) -> PartList:
    w, h = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.5)
    t, back_h = rng.uniform(0.03, 0.07), rng.uniform(0.3, 0.7)
    return [
        ("seat", [Box((0, h + t / 2, 0), (w, t, w))]),
        ("back", [Box((0, h + t + back_h / 2, -w / 2 + 0.02), (w, back_h, 0.04))]),
        ("leg", _legs(rng, 0.42 * w, 0.42 * w, h, rng.uniform(0.015, 0.03))),
    ]


def _stool(rng) -> PartList:
    r, h = rng.uniform(0.18, 0.3), rng.uniform(0.45, 0.8)
    t = rng.uniform(0.03, 0.07)
    return [
        ("seat", [Frustum((0, h, 0), r, r, t)]),
        ("leg", _legs(rng, 0.8 * r, 0.8 * r, h, rng.uniform(0.015, 0.03), count=int(rng.choice([3, 4])))),
    ]


def _mug(rng) -> PartList:
    r, h = rng.uniform(0.3, 0.45), rng.uniform(0.6, 1.0)
    return [
        ("body", [Frustum((0, 0, 0), r, r * rng.uniform(1.0, 1.15), h, cap_top=False)]),
        ("handle", [TorusArc((r, h * 0.5, 0), h * rng.uniform(0.28, 0.38), rng.uniform(0.04, 0.07))]),
    ]


def _vase(rng) -> PartList:
    r, h = rng.uniform(0.3, 0.5), rng.uniform(0.6, 1.1)
    neck_r, neck_h = r * rng.uniform(0.5, 0.85), rng.uniform(0.1, 0.35)
    return [
        (
            "body",
            [
                Frustum((0, 0, 0), r * rng.uniform(0.7, 1.0), r, h * 0.6),
                Frustum((0, h * 0.6, 0), r, neck_r, h * 0.4, cap_bottom=False, cap_top=False),
            ],
        ),
        ("neck", [Frustum((0, h, 0), neck_r, neck_r * rng.uniform(1.0, 1.3), neck_h, cap_bottom=False, cap_top=False)]),
    ]


def _bottle(rng) -> PartList:
    r, h = rng.uniform(0.15, 0.3), rng.uniform(0.7, 1.3)
    neck_r, neck_h = r * rng.uniform(0.3, 0.5), rng.uniform(0.2, 0.45)
    shoulder = rng.uniform(0.05, 0.2)
    return [
        (
            "body",
            [Frustum((0, 0, 0), r, r, h), Frustum((0, h, 0), r, neck_r, shoulder, cap_bottom=False, cap_top=False)],
        ),
        ("neck", [Frustum((0, h + shoulder, 0), neck_r, neck_r, neck_h, cap_bottom=False, cap_top=False)]),
        ("cap", [Frustum((0, h + shoulder + neck_h, 0), neck_r * 1.15, neck_r * 1.15, rng.uniform(0.04, 0.1))]),
    ]


def _rocket(rng) -> PartList:
    r, h = rng.uniform(0.12, 0.25), rng.uniform(0.9, 1.5)
    nose = rng.uniform(0.2, 0.5)
    fin = rng.uniform(0.15, 0.3)
    count = int(rng.choice([3, 4]))
    fins: list[Primitive] = []
    for k in range(count):
        a = 2 * np.pi * k / count
        cx, cz = (r + fin / 2) * np.cos(a), (r + fin / 2) * np.sin(a)
        size = (abs(fin * np.cos(a)) + 0.02, fin * 1.2, abs(fin * np.sin(a)) + 0.02)
        fins.append(Box((cx, fin * 0.6, cz), size))
    return [
        ("body", [Frustum((0, 0, 0), r, r, h, cap_top=False)]),
        ("nose", [Frustum((0, h, 0), r, 0.0, nose, cap_bottom=False, cap_top=False)]),
        ("fin", fins),
    ]


def _lamp(rng) -> PartList:
    base_r, pole_h = rng.uniform(0.15, 0.3), rng.uniform(0.7, 1.3)
    shade_h = rng.uniform(0.2, 0.4)
    bottom, top = rng.uniform(0.2, 0.4), rng.uniform(0.08, 0.2)
    return [
        ("base", [Frustum((0, 0, 0), base_r, base_r * 0.8, rng.uniform(0.03, 0.08))]),
        ("pole", [Frustum((0, 0.05, 0), 0.02, 0.02, pole_h, cap_bottom=False)]),
        ("shade", [Frustum((0, pole_h - shade_h * 0.6, 0), bottom, top, shade_h, cap_bottom=False, cap_top=False)]),
    ]


def _umbrella(rng) -> PartList:
    pole_h, canopy_r = rng.uniform(0.9, 1.4), rng.uniform(0.4, 0.8)
    canopy_h = rng.uniform(0.15, 0.35)
    return [
        ("canopy", [Frustum((0, pole_h - canopy_h, 0), canopy_r, 0.0, canopy_h, cap_bottom=False, cap_top=False)]),
        ("pole", [Frustum((0, 0.0, 0), 0.02, 0.02, pole_h, cap_bottom=False)]),
    ]


def _airplane(rng) -> PartList:
    length, r = rng.uniform(1.2, 2.0), rng.uniform(0.08, 0.16)
    span, chord = rng.uniform(1.0, 1.9), rng.uniform(0.15, 0.35)
    tail_span = span * rng.uniform(0.25, 0.45)
    return [
        (
            "fuselage",
            [
                Frustum((0, 0, -length / 2), r, r * 0.6, length, axis="z"),
                Ellipsoid((0, 0, length / 2), (r * 0.6, r * 0.6, r)),
            ],
        ),
        ("wing", [Box((0, 0, rng.uniform(-0.1, 0.1) * length), (span, 0.03, chord))]),
        (
            "tail",
            [
                Box((0, 0, -length * 0.45), (tail_span, 0.03, chord * 0.6)),
                Box((0, r + 0.12, -length * 0.45), (0.03, 0.25, chord * 0.6)),
            ],
        ),
    ]


def _shelf(rng) -> PartList:
    w, h, d = rng.uniform(0.6, 1.2), rng.uniform(0.8, 1.8), rng.uniform(0.25, 0.45)
    boards = int(rng.integers(3, 6))
    t = 0.03
    return [
        ("side", [Box((sx * w / 2, h / 2, 0), (t, h, d)) for sx in (-1, 1)]),
        ("board", [Box((0, y, 0), (w, t, d)) for y in np.linspace(t, h - t, boards)]),
    ]


_BUILDERS: dict[str, Callable[[np.random.Generator], PartList]] = {
    "airplane": _airplane,
    "bench": _bench,
    "bottle": _bottle,
    "chair": _chair,
    "lamp": _lamp,
    "mug": _mug,
    "rocket": _rocket,
    "shelf": _shelf,
    "stool": _stool,
    "table": _table,
    "umbrella": _umbrella,
    "vase": _vase,
}
CLASS_NAMES = sorted(_BUILDERS)
_PART_NAMES_BY_CLASS = {name: [p for p, _ in _BUILDERS[name](np.random.default_rng(0))] for name in CLASS_NAMES}
PART_NAMES = [f"{c}/{p}" for c in CLASS_NAMES for p in _PART_NAMES_BY_CLASS[c]]
CATEGORY_PARTS = {c: [PART_NAMES.index(f"{c}/{p}") for p in _PART_NAMES_BY_CLASS[c]] for c in CLASS_NAMES}


def _sample_parts(parts: PartList, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    prims = [(label, prim) for label, (_, group) in enumerate(parts) for prim in group]
    # Sampling density varies per part, as real scanners see some surfaces more densely than others.
    weights = np.array([prim.area * rng.uniform(0.5, 1.5) for _, prim in prims])
    counts = rng.multinomial(n, weights / weights.sum())
    points = np.concatenate([prim.sample(int(c), rng) for (_, prim), c in zip(prims, counts, strict=True)])
    labels = np.concatenate([np.full(int(c), label) for (label, _), c in zip(prims, counts, strict=True)])
    return points, labels


def generate_object(class_name: str, num_points: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One object of ``class_name``: ``points (num_points, 3)`` and local part labels ``(num_points,)``."""
    parts = _BUILDERS[class_name](rng)
    points, labels = _sample_parts(parts, int(num_points * 1.6), rng)
    if rng.random() < 0.35:  # partial scan: a random half-space cuts away a region
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        proj = (points - points.mean(0)) @ direction
        keep = proj < np.quantile(proj, 1 - rng.uniform(0.1, 0.35))
        points, labels = points[keep], labels[keep]
    idx = rng.choice(len(points), num_points, replace=len(points) < num_points)
    points, labels = points[idx], labels[idx]
    points = points + rng.normal(0, rng.uniform(0.0, 0.02), points.shape).astype(np.float32)
    if rng.random() < 0.3:  # outliers: stray returns anywhere in the bounding box, labelled by nearest part
        k = max(1, int(num_points * rng.uniform(0.005, 0.03)))
        lo, hi = points.min(0), points.max(0)
        stray = rng.uniform(lo, hi, (k, 3)).astype(np.float32)
        nearest = np.argmin(((stray[:, None] - points[None, :]) ** 2).sum(-1), axis=1)
        where = rng.choice(num_points, k, replace=False)
        points[where], labels[where] = stray, labels[nearest]
    angle = rng.uniform(0, 2 * np.pi)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float32)
    return (points @ rot.T).astype(np.float32), labels.astype(np.int64)


@register_dataset("shapes")
def load_shapes(
    split: str,
    *,
    task: str | None = "classification",
    num_points: int = 1024,
    seed: int = 0,
    samples_per_class: int | None = None,
    **_: object,
) -> PointCloudDataset:
    """The ``shapes`` split: 150 objects per class for ``train``, 50 for ``test`` unless told otherwise."""
    if split not in _SPLIT_STREAM:
        raise ConfigError(f"shapes has splits {sorted(_SPLIT_STREAM)}, not {split!r}")
    task = task or "classification"
    if task not in ("classification", "part_segmentation"):
        raise ConfigError(f"shapes serves classification and part_segmentation, not {task!r}")
    per_class = samples_per_class or (150 if split == "train" else 50)
    samples = []
    for label, name in enumerate(CLASS_NAMES):
        for i in range(per_class):
            rng = np.random.default_rng([seed, _SPLIT_STREAM[split], label, i])
            points, local = generate_object(name, num_points, rng)
            seg = np.asarray(CATEGORY_PARTS[name])[local] if task == "part_segmentation" else None
            samples.append(Sample(points=points, label=label, seg=seg))
    return PointCloudDataset(
        name="shapes",
        split=split,
        task=task,  # type: ignore[arg-type]
        samples=samples,
        class_names=list(CLASS_NAMES),
        part_names=list(PART_NAMES) if task == "part_segmentation" else [],
        category_parts=dict(CATEGORY_PARTS) if task == "part_segmentation" else {},
    )
