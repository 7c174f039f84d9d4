"""Cached augmented epochs: N augmented copies of the training split, preprocessed once and cycled over.

Families whose preprocessor is expensive (neighbourhoods per cloud, as pcn computes) would spend most of a live
epoch on the CPU. Their reference trains from a fixed set of augmented copies of the training set instead, each
from its own stateless seed, neighbourhoods included; ``pointserve train --cache-epochs N`` does the same for any
family: training epoch ``e`` (1-based) reads copy ``(e - 1) % N``, in a batch order drawn from the trainer's rng,
and collates it exactly as a live epoch (:func:`pointserve.training.loop.make_batch`).

Copy ``c``, cloud ``i`` is :func:`~pointserve.training.loop.prepare_sample` with its own generator seeded
``[seed, c, i]`` (any cloud of any copy can be recomputed alone, whatever N is), then
:func:`~pointserve.models.collate.cloud_inputs`: the family's preprocessor. A copy never depends on N, so a
cache of 32 copies serves a run that asks for 16 and grows for one that asks for 64.

Layout::

    <cache_dir>/<architecture>-<key[:16]>/key.json        what the key hashes (readable), and the full key
    <cache_dir>/<architecture>-<key[:16]>/copy_NNNN.npz   one augmented copy (np.savez, no pickle)

One ``.npz`` per copy holds, for every array name the preprocessor returns, the per-cloud arrays concatenated
along their first axis (``inputs/<name>``) and where each cloud starts (``offsets/<name>``, (S + 1,) int64),
the labels (``labels``, (S,)), the per-point labels (``seg`` + ``seg_offsets``) for segmentation, and a JSON
record (``meta``: format, key, copy, cloud count). Files are written to a temporary name and renamed, and a
file is used only when it reads back whole (the zip CRCs) and its record and offsets match: an interrupted or
damaged file is rebuilt, never trusted.

The key does not see code changes inside the augmentation or preprocessor functions (only their names):
bump :data:`CACHE_FORMAT` when a change alters what they compute, or delete the cache folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pointserve.card import ModelCard
from pointserve.data.base import PointCloudDataset
from pointserve.files import atomic_write, atomic_write_text
from pointserve.models.collate import cloud_inputs
from pointserve.models.registry import get_spec
from pointserve.training.loop import Batch, batch_order, make_batch, prepare_sample

CACHE_FORMAT = 1
KEY_FILE = "key.json"
CACHE_ENV = "POINTSERVE_CACHE"


class CacheError(Exception):
    """A cached copy that cannot be trusted (unreadable, truncated, or not the one asked for)."""


def default_cache_dir() -> Path:
    """``$POINTSERVE_CACHE`` if set, else ``~/.cache/pointserve/epochs``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pointserve" / "epochs"


def callable_identity(fn: Callable) -> str:
    """``module.qualname`` of a function (a ``functools.partial`` adds its bound arguments)."""
    if isinstance(fn, functools.partial):
        return f"{callable_identity(fn.func)}(*{fn.args!r}, **{sorted(fn.keywords.items())!r})"
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def key_fields(card: ModelCard, seed: int) -> dict[str, Any]:
    """Everything a cached copy depends on: the data, the family and its settings, the seed and the code names."""
    spec = get_spec(card.architecture)
    return {
        "format": CACHE_FORMAT,
        "data_hash": card.data_hash,
        "architecture": card.architecture,
        "config": card.config,
        "preprocessing": card.preprocessing,
        "num_points": card.num_points,
        "normalization": card.normalization,
        "seed": seed,
        "augment": callable_identity(spec.augment),
        "preprocess": callable_identity(spec.preprocess),
    }


def cache_key(fields: dict[str, Any]) -> str:
    """sha256 of the fields as canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def cloud_rng(seed: int, copy: int, index: int) -> np.random.Generator:
    """The stateless generator of one cloud of one copy."""
    return np.random.default_rng([seed, copy, index])


def compute_cloud(dataset: PointCloudDataset, card: ModelCard, seed: int, copy: int, index: int):
    """Cloud ``index`` of copy ``copy``: ``(named arrays from the preprocessor, per-point labels or None)``."""
    sample = dataset[index]
    points, seg = prepare_sample(sample, card, cloud_rng(seed, copy, index), train=True)
    return cloud_inputs(get_spec(card.architecture), card, points, int(sample.label)), seg


def _join(name: str, arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-cloud arrays -> (concatenated along axis 0, (S + 1,) offsets); 0-d arrays count one row each."""
    rows = [np.asarray(a).reshape(1) if np.ndim(a) == 0 else np.asarray(a) for a in arrays]
    first = rows[0]
    for i, row in enumerate(rows):
        if row.dtype != first.dtype or row.shape[1:] != first.shape[1:]:
            raise CacheError(
                f"{name!r}: cloud {i} is {row.dtype}{list(row.shape)}, cloud 0 {first.dtype}{list(first.shape)}; "
                "only the first dimension may vary between clouds"
            )
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    return np.concatenate(rows), offsets


def build_copy(dataset: PointCloudDataset, card: ModelCard, seed: int, copy: int, key: str, progress=None):
    """Every cloud of copy ``copy`` -> the arrays of its ``.npz`` (see the module docstring)."""
    per_name: dict[str, list[np.ndarray]] = {}
    segs: list[np.ndarray] = []
    names: list[str] | None = None
    for index in range(len(dataset)):
        arrays, seg = compute_cloud(dataset, card, seed, copy, index)
        if names is None:
            names = list(arrays)
        elif list(arrays) != names:
            raise CacheError(f"cloud {index}: the preprocessor returned {list(arrays)}, cloud 0 {names}")
        for name, array in arrays.items():
            per_name.setdefault(name, []).append(array)
        if seg is not None:
            segs.append(np.asarray(seg, dtype=np.int64))
        if progress is not None:
            progress.update(1)
    if segs and len(segs) != len(dataset):
        raise CacheError("per-point labels for some clouds only")
    out: dict[str, np.ndarray] = {}
    scalars = [name for name in names or [] if np.ndim(per_name[name][0]) == 0]
    for name in names or []:
        out[f"inputs/{name}"], out[f"offsets/{name}"] = _join(name, per_name[name])
    out["labels"] = np.asarray([int(s.label) for s in dataset.samples], dtype=np.int64)
    if segs:
        out["seg"], out["seg_offsets"] = _join("seg", segs)
    meta = {"format": CACHE_FORMAT, "key": key, "copy": copy, "clouds": len(dataset), "inputs": names or []}
    meta.update(scalars=scalars, seg=bool(segs))
    out["meta"] = np.asarray(json.dumps(meta))
    return out


@dataclass
class CachedCopy:
    """One loaded copy: the per-cloud arrays of cloud ``i`` are slices ``offsets[i]:offsets[i + 1]``."""

    inputs: dict[str, np.ndarray]
    offsets: dict[str, np.ndarray]
    scalars: frozenset[str]
    labels: np.ndarray
    seg: np.ndarray | None
    seg_offsets: np.ndarray | None

    def __len__(self) -> int:
        return len(self.labels)

    def cloud(self, i: int) -> tuple[dict[str, np.ndarray], int, np.ndarray | None]:
        """``(named arrays as the preprocessor returned them, label, per-point labels or None)``."""
        arrays = {}
        for name, data in self.inputs.items():
            offsets = self.offsets[name]
            piece = data[offsets[i] : offsets[i + 1]]
            arrays[name] = piece.reshape(()) if name in self.scalars else piece
        seg = None
        if self.seg is not None and self.seg_offsets is not None:
            seg = self.seg[self.seg_offsets[i] : self.seg_offsets[i + 1]]
        return arrays, int(self.labels[i]), seg


def _check_offsets(name: str, offsets: np.ndarray, data: np.ndarray, clouds: int) -> None:
    if offsets.shape != (clouds + 1,) or offsets[0] != 0 or offsets[-1] != len(data) or np.any(np.diff(offsets) < 0):
        raise CacheError(f"{name!r}: offsets do not describe {clouds} clouds of {len(data)} rows")


def _read_meta(files) -> dict:
    meta = json.loads(str(files["meta"][()]))
    if not isinstance(meta, dict):
        raise CacheError("no meta record")
    return meta


def load_copy(path: Path, key: str, copy: int, clouds: int) -> CachedCopy:
    """Read and check a copy file whole (CacheError when it is damaged or is not copy ``copy`` of ``key``)."""
    try:
        with np.load(path, allow_pickle=False) as files:
            meta = _read_meta(files)
            if (meta.get("format"), meta.get("key"), meta.get("copy"), meta.get("clouds")) != (
                CACHE_FORMAT,
                key,
                copy,
                clouds,
            ):
                raise CacheError("written for another key, copy or dataset size")
            arrays = {name: files[name] for name in files.files}  # reading every member checks its CRC
    except CacheError as exc:
        raise CacheError(f"{path}: {exc}") from None
    except (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise CacheError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    inputs = {name: arrays[f"inputs/{name}"] for name in meta["inputs"]}
    offsets = {name: arrays[f"offsets/{name}"] for name in meta["inputs"]}
    for name in inputs:
        _check_offsets(name, offsets[name], inputs[name], clouds)
    labels = arrays["labels"]
    if labels.shape != (clouds,):
        raise CacheError(f"{path}: {labels.shape} labels for {clouds} clouds")
    seg = seg_offsets = None
    if meta["seg"]:
        seg, seg_offsets = arrays["seg"], arrays["seg_offsets"]
        _check_offsets("seg", seg_offsets, seg, clouds)
    return CachedCopy(inputs, offsets, frozenset(meta["scalars"]), labels, seg, seg_offsets)


def _looks_complete(path: Path, key: str, copy: int, clouds: int) -> bool:
    """The cheap check at start-up: the zip directory (at the file's end, so truncation loses it) and the record.
    The member CRCs are checked when the copy is read for its epoch."""
    try:
        with np.load(path, allow_pickle=False) as files:
            meta = _read_meta(files)
    except (OSError, ValueError, EOFError, KeyError, TypeError, CacheError, zipfile.BadZipFile):
        return False
    return (meta.get("format"), meta.get("key"), meta.get("copy"), meta.get("clouds")) == (
        CACHE_FORMAT,
        key,
        copy,
        clouds,
    )


class EpochCache:
    """N cached augmented copies of one training split for one card and seed; :meth:`prepare` builds or reuses."""

    def __init__(
        self,
        cache_dir: str | Path,
        dataset: PointCloudDataset,
        card: ModelCard,
        seed: int,
        copies: int,
        log: Callable[[str], None] = print,
    ):
        if copies < 1:
            raise ValueError("cache_epochs must be at least 1")
        self.dataset, self.card, self.seed, self.copies, self.log = dataset, card, seed, copies, log
        self.fields = key_fields(card, seed)
        self.key = cache_key(self.fields)
        self.directory = Path(cache_dir).expanduser() / f"{card.architecture}-{self.key[:16]}"
        self._loaded: tuple[int, CachedCopy] | None = None

    def path(self, copy: int) -> Path:
        return self.directory / f"copy_{copy:04d}.npz"

    def copy_index(self, epoch: int) -> int:
        """The copy training epoch ``epoch`` (1-based) reads."""
        return (epoch - 1) % self.copies

    def prepare(self) -> EpochCache:
        """Reuse the copies already on disk and build the missing (or damaged) ones, with a progress bar."""
        self.directory.mkdir(parents=True, exist_ok=True)
        key_text = json.dumps({**self.fields, "key": self.key}, indent=1, sort_keys=True, default=str) + "\n"
        key_path = self.directory / KEY_FILE
        if not key_path.is_file() or key_path.read_text() != key_text:
            atomic_write_text(key_path, key_text)
        size = len(self.dataset)
        missing = [c for c in range(self.copies) if not _looks_complete(self.path(c), self.key, c, size)]
        reused = self.copies - len(missing)
        if not missing:
            self.log(f"reusing {self.copies} cached epochs from {self.directory}")
        else:
            also = f"reusing {reused}, " if reused else ""
            self.log(f"caching {self.copies} augmented epochs in {self.directory} ({also}building {len(missing)})")
            self._build(missing)
        return self

    def _build(self, copies: list[int]) -> None:
        total = len(copies) * len(self.dataset)
        with tqdm(total=total, desc=f"caching {len(copies)} epochs", unit="cloud", leave=False) as progress:
            for copy in copies:
                arrays = build_copy(self.dataset, self.card, self.seed, copy, self.key, progress)
                atomic_write(self.path(copy), lambda handle, a=arrays: np.savez(handle, **a))

    def load(self, copy: int) -> CachedCopy:
        """Copy ``copy``, read whole and checked; a damaged file is rebuilt (deterministically) and read again."""
        if self._loaded is not None and self._loaded[0] == copy:
            return self._loaded[1]
        try:
            loaded = load_copy(self.path(copy), self.key, copy, len(self.dataset))
        except CacheError as exc:
            self.log(f"cached epoch {copy} is not usable ({exc}); rebuilding it")
            self._build([copy])
            loaded = load_copy(self.path(copy), self.key, copy, len(self.dataset))
        self._loaded = (copy, loaded)
        return loaded

    def batches(self, epoch: int, batch_size: int, rng: np.random.Generator, device: str = "cpu") -> Iterator[Batch]:
        """Training epoch ``epoch``: its copy in a shuffled batch order from ``rng``, collated as a live epoch."""
        spec = get_spec(self.card.architecture)
        loaded = self.load(self.copy_index(epoch))
        for chosen in batch_order(len(loaded), batch_size, rng, train=True):
            arrays, labels, segs = zip(*(loaded.cloud(int(i)) for i in chosen), strict=True)
            yield make_batch(spec, self.card, arrays, labels, segs if loaded.seg is not None else None, device)


__all__ = [
    "CACHE_FORMAT",
    "CacheError",
    "CachedCopy",
    "EpochCache",
    "build_copy",
    "cache_key",
    "callable_identity",
    "cloud_rng",
    "compute_cloud",
    "default_cache_dir",
    "key_fields",
    "load_copy",
]
