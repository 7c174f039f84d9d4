"""ShapeNet part readers: the .pts/.seg benchmark with its JSON splits, and PointNet's ``hdf5_data`` variant.

Part labels are global ids: categories in order, each category's parts consecutive (the standard 50-part
layout for the standard 16 categories: Airplane 0-3, Bag 4-5, ..., Table 47-49).

Shapes:
    every sample's points: (num_points, 3) float32; seg: (num_points,) int64 global part ids
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pointserve.data.base import PointCloudDataset, Sample
from pointserve.data.formats import parse_numeric_text, read_file_bytes
from pointserve.data.readers import (
    Root,
    check_array,
    check_labels,
    check_split,
    check_task,
    dataset_dir,
    list_file_paths,
    read_hdf5,
    read_lines,
    resample_batch_indices,
    resample_cloud,
    sample_rng,
)
from pointserve.data.registry import register_dataset
from pointserve.errors import ConfigError, DataError

SHAPENET_PART_FOLDER = "shapenetcore_partanno_segmentation_benchmark_v0"
SHAPENET_H5_FOLDER = "hdf5_data"
TASKS = ("part_segmentation", "classification")
# (category, synset, number of parts) in synset order: the standard 16 categories and 50 parts.
STANDARD_CATEGORIES = (
    ("Airplane", "02691156", 4), ("Bag", "02773838", 2), ("Cap", "02954340", 2), ("Car", "02958343", 4),
    ("Chair", "03001627", 4), ("Earphone", "03261776", 3), ("Guitar", "03467517", 3), ("Knife", "03624134", 2),
    ("Lamp", "03636649", 4), ("Laptop", "03642806", 2), ("Motorbike", "03790512", 6), ("Mug", "03797390", 2),
    ("Pistol", "03948459", 3), ("Rocket", "04099429", 3), ("Skateboard", "04225987", 3), ("Table", "04379243", 3),
)  # fmt: skip
STANDARD_PART_COUNTS = {synset: count for _, synset, count in STANDARD_CATEGORIES}


@dataclass(frozen=True)
class PartLayout:
    """Which global part ids belong to which category, and the parts' names ("Airplane/part1", ...)."""

    categories: list[str]
    parts: list[list[int]]
    part_names: list[str]

    @classmethod
    def from_counts(cls, categories: Sequence[str], counts: Sequence[int]) -> PartLayout:
        parts, names, offset = [], [], 0
        for category, count in zip(categories, counts, strict=True):
            parts.append(list(range(offset, offset + count)))
            names += [f"{category}/part{j + 1}" for j in range(count)]
            offset += count
        return cls(list(categories), parts, names)

    @property
    def category_parts(self) -> dict[str, list[int]]:
        return dict(zip(self.categories, self.parts, strict=True))


def read_categories(path: Path) -> list[tuple[str, str]]:
    """(name, synset) pairs from the lines (``Airplane\\t02691156``) of ``synsetoffset2category.txt`` or
    ``all_object_categories.txt``."""
    pairs = []
    for number, line in enumerate(read_lines(path), start=1):
        fields = line.split()
        if len(fields) != 2:
            raise DataError(f"{path}: line {number}: expected '<category> <synset>', got {line!r}")
        pairs.append((fields[0], fields[1]))
    if not pairs:
        raise DataError(f"{path}: lists no categories")
    return pairs


def _dataset(name: str, split: str, task: str, samples: list[Sample], layout: PartLayout) -> PointCloudDataset:
    if task == "classification":
        return PointCloudDataset(name, split, task, samples, layout.categories)
    return PointCloudDataset(name, split, task, samples, layout.categories, layout.part_names, layout.category_parts)


def _splits(split: str, include_val: bool, dataset: str) -> list[str]:
    check_split(split, ("train", "val", "test"), dataset)
    return ["train", "val"] if split == "train" and include_val else [split]


def _chosen(categories: Sequence[str], wanted: Sequence[str] | None) -> set[str]:
    if wanted is None:
        return set(categories)
    lower = {c.lower(): c for c in categories}
    unknown = [w for w in wanted if w.lower() not in lower]
    if unknown:
        raise ConfigError(f"unknown ShapeNet categories {', '.join(unknown)}; known: {', '.join(categories)}")
    return {lower[w.lower()] for w in wanted}


# ------------------------------------------------------------------------------------------------- .pts / .seg


@register_dataset("shapenet_part")
def load_shapenet_part(
    split: str,
    *,
    root: Root = None,
    task: str | None = None,
    num_points: int | None = 1024,
    seed: int = 0,
    include_val: bool = True,
    categories: Sequence[str] | None = None,
    **_: object,
) -> PointCloudDataset:
    """``shapenetcore_partanno_segmentation_benchmark_v0/``: ``<synset>/points/<id>.pts`` (x y z rows) and
    ``<synset>/points_label/<id>.seg`` (1-based part label per line, local to the category), split by
    ``train_test_split/shuffled_{train,val,test}_file_list.json``, categories in ``synsetoffset2category.txt``.
    ``categories`` keeps only the named categories (the part layout stays the full one)."""
    name = "shapenet_part"
    task = check_task(task, TASKS, name)
    folder = dataset_dir(root, SHAPENET_PART_FOLDER, "synsetoffset2category.txt", name)
    pairs = sorted(read_categories(folder / "synsetoffset2category.txt"), key=lambda pair: pair[1])
    counts = [STANDARD_PART_COUNTS.get(synset) or _count_parts(folder / synset / "points_label") for _, synset in pairs]
    layout = PartLayout.from_counts([c for c, _ in pairs], counts)
    index_of = {synset: i for i, (_, synset) in enumerate(pairs)}
    chosen = _chosen(layout.categories, categories)
    samples = []
    for part in _splits(split, include_val, name):
        for synset, shape_id in _read_split(folder / "train_test_split" / f"shuffled_{part}_file_list.json"):
            c = index_of.get(synset)
            if c is None or layout.categories[c] not in chosen:
                continue
            points_path = folder / synset / "points" / f"{shape_id}.pts"
            seg_path = folder / synset / "points_label" / f"{shape_id}.seg"
            points = parse_numeric_text(read_file_bytes(points_path), str(points_path), min_columns=3)[:, :3]
            if len(points) == 0:
                raise DataError(f"{points_path}: has no points")
            local = parse_numeric_text(read_file_bytes(seg_path), str(seg_path), dtype=np.int64)
            if local.shape[1] != 1 or len(local) != len(points):
                raise DataError(
                    f"{seg_path}: has {len(local)} rows of {local.shape[1]} labels, expected one label for each"
                    f" of the {len(points)} points of {points_path.name}"
                )
            local = local[:, 0] - 1  # 1-based in the files
            check_labels(local, counts[c], f"{seg_path} (category {layout.categories[c]}, 0-based)", "part label")
            seg = layout.parts[c][0] + local
            points, seg = resample_cloud(points, seg, num_points, sample_rng(seed, len(samples)))
            samples.append(Sample(points=points, label=c, seg=None if task == "classification" else seg))
    return _dataset(name, split, task, samples, layout)


def _read_split(path: Path) -> list[tuple[str, str]]:
    """(synset, shape id) of each entry ``shape_data/<synset>/<id>`` of a split JSON file."""
    try:
        entries = json.loads(read_file_bytes(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a JSON list of 'shape_data/<synset>/<id>' strings")
    out = []
    for index, entry in enumerate(entries):
        parts = entry.strip("/").split("/") if isinstance(entry, str) else []
        if len(parts) < 2 or not all(parts[-2:]):
            raise DataError(f"{path}: entry {index} is {entry!r}, expected 'shape_data/<synset>/<id>'")
        out.append((parts[-2], parts[-1]))
    return out


def _count_parts(label_folder: Path) -> int:
    """A category outside the standard 16: its part count is the largest label in any of its .seg files."""
    files = sorted(label_folder.glob("*.seg"))
    if not files:
        raise DataError(f"{label_folder}: no .seg files to count the parts of this non-standard category")
    largest = max(int(parse_numeric_text(read_file_bytes(f), str(f), dtype=np.int64).max(initial=0)) for f in files)
    if largest < 1:
        raise DataError(f"{label_folder}: .seg files hold no part labels >= 1")
    return largest


# ------------------------------------------------------------------------------------------------------ hdf5_data


@register_dataset("shapenet_part_h5")
def load_shapenet_part_h5(
    split: str,
    *,
    root: Root = None,
    task: str | None = None,
    num_points: int | None = 1024,
    seed: int = 0,
    include_val: bool = True,
    **_: object,
) -> PointCloudDataset:
    """``hdf5_data/``: ``ply_data_{train,val,test}N.h5`` with ``data`` (B, P, 3), ``label`` (B, 1) category,
    ``pid`` (B, P) global part id; categories in ``all_object_categories.txt`` (label order), files listed in
    ``{train,val,test}_hdf5_file_list.txt``."""
    name = "shapenet_part_h5"
    task = check_task(task, TASKS, name)
    folder = dataset_dir(root, SHAPENET_H5_FOLDER, "all_object_categories.txt", name)
    pairs = read_categories(folder / "all_object_categories.txt")
    lists = {part: folder / f"{part}_hdf5_file_list.txt" for part in ("train", "val", "test")}
    if [s for _, s in pairs] == [s for _, s, _ in STANDARD_CATEGORIES]:
        layout = PartLayout.from_counts([c for c, _ in pairs], [n for _, _, n in STANDARD_CATEGORIES])
    else:
        layout = _layout_from_h5(pairs, [p for f in lists.values() if f.exists() for p in list_file_paths(f, folder)])
    belongs = np.zeros((len(pairs), len(layout.part_names)), dtype=bool)  # belongs[category, part id]
    for c, parts in enumerate(layout.parts):
        belongs[c, parts] = True
    samples = []
    for part in _splits(split, include_val, name):
        for path in list_file_paths(lists[part], folder):
            data, labels, pid = _read_part_h5(path, len(pairs), len(layout.part_names))
            wrong = ~belongs[labels[:, None], pid]
            if wrong.any():
                i, j = np.argwhere(wrong)[0]
                category = layout.categories[labels[i]]
                raise DataError(
                    f"{path}: sample {i} ({category}) has part id {pid[i, j]} at point {j}, which is not one of"
                    f" {category}'s parts {layout.parts[labels[i]]}"
                )
            if num_points is not None and num_points != data.shape[1]:
                index = resample_batch_indices(len(data), data.shape[1], num_points, sample_rng(seed, len(samples)))
                data, pid = np.take_along_axis(data, index[:, :, None], axis=1), np.take_along_axis(pid, index, axis=1)
            data = np.ascontiguousarray(data, dtype=np.float32)
            for i in range(len(data)):
                seg = None if task == "classification" else pid[i]
                samples.append(Sample(points=data[i], label=int(labels[i]), seg=seg))
    return _dataset(name, split, task, samples, layout)


def _read_part_h5(path: Path, num_categories: int, num_parts: int | None) -> tuple[np.ndarray, ...]:
    """``data`` (B, P, 3) float, ``label`` (B,) int64 category, ``pid`` (B, P) int64, checked."""
    arrays = read_hdf5(path, ("data", "label", "pid"))
    data = check_array(arrays["data"], path, "data", (None, None, 3), "f")
    labels = arrays["label"]
    labels = check_array(labels[:, None] if labels.ndim == 1 else labels, path, "label", (len(data), 1), "iu")
    labels = labels[:, 0].astype(np.int64)
    check_labels(labels, num_categories, f"{path} ('label'; {num_categories} categories)", "category")
    pid = check_array(arrays["pid"], path, "pid", data.shape[:2], "iu").astype(np.int64)
    if num_parts is not None:
        check_labels(pid.ravel(), num_parts, f"{path} ('pid', flattened; {num_parts} parts)", "part id")
    return data, labels, pid


def _layout_from_h5(pairs: list[tuple[str, str]], files: list[Path]) -> PartLayout:
    """For a non-standard category list: each category's parts are the part ids its clouds use, in all splits."""
    seen: list[set[int]] = [set() for _ in pairs]
    for path in files:
        _, labels, pid = _read_part_h5(path, len(pairs), None)
        for c in np.unique(labels):
            seen[c].update(int(p) for p in np.unique(pid[labels == c]))
    owner: dict[int, str] = {}
    for (category, _), parts in zip(pairs, seen, strict=True):
        for p in parts:
            if p in owner:
                raise DataError(f"{files[0].parent}: part id {p} occurs in categories {owner[p]} and {category}")
            owner[p] = category
    total = max(owner, default=-1) + 1
    names = [f"unused{p}" for p in range(total)]
    for (category, _), parts in zip(pairs, seen, strict=True):
        for j, p in enumerate(sorted(parts)):
            names[p] = f"{category}/part{j + 1}"
    return PartLayout([c for c, _ in pairs], [sorted(s) for s in seen], names)
