"""Cached augmented epochs: built once and reused, keyed by everything they depend on, equal to recomputing,
never trusted when damaged, and cycled over by training (``pointserve train --cache-epochs``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from tiny_models import SEMANTIC, load_tiny_semantic

from pointserve.card import ModelCard
from pointserve.cli import main
from pointserve.data import load_dataset
from pointserve.models import get_spec
from pointserve.models import registry as model_registry
from pointserve.models.collate import cloud_inputs
from pointserve.training import epoch_cache
from pointserve.training.epoch_cache import CacheError, EpochCache, default_cache_dir, load_copy
from pointserve.training.loop import make_batch, prepare_sample

pytestmark = pytest.mark.usefixtures("tiny_semantic_dataset")
SEED = 5


def drop_some_points(points, rng, seg=None):
    """An augmentation that changes the number of points (as pcn's does): keeps 60-100% of them."""
    keep = np.sort(rng.choice(len(points), int(len(points) * rng.uniform(0.6, 1.0)), replace=False))
    return points[keep], (seg[keep] if seg is not None else None)


def _setup(architecture: str, num_points: int = 64, **options):
    """(training split, card) as the trainer builds them."""
    spec = get_spec(architecture)
    if spec.task == "semantic_segmentation":
        data = load_tiny_semantic("train")
    else:
        data = load_dataset("shapes", "train", task=spec.task, num_points=num_points, samples_per_class=1)
    options = {"dropout": 0.3, "feature_transform": False, **options}
    card = ModelCard(
        architecture=architecture,
        config=spec.model_config(data, options),
        preprocessing=spec.preprocessing(options),
        task=spec.task,
        class_names=data.class_names,
        part_names=data.part_names,
        category_parts=data.category_parts,
        in_channels=data.in_channels,
        num_points=num_points,
        data_hash=data.content_hash(),
    )
    return data, card


def _cache(tmp_path, data, card, copies=2, seed=SEED, messages=None) -> EpochCache:
    log = messages.append if messages is not None else (lambda message: None)
    return EpochCache(tmp_path / "cache", data, card, seed, copies, log=log)


def _mtimes(cache: EpochCache) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in cache.directory.iterdir()}


def test_cache_is_built_once_then_reused(tmp_path):
    data, card = _setup("knn_edge_seg")
    messages: list[str] = []
    cache = _cache(tmp_path, data, card, messages=messages).prepare()
    assert sorted(p.name for p in cache.directory.iterdir()) == ["copy_0000.npz", "copy_0001.npz", "key.json"]
    assert "building 2" in messages[-1]
    before = _mtimes(cache)
    again = _cache(tmp_path, data, card, messages=messages).prepare()
    assert messages[-1] == f"reusing 2 cached epochs from {cache.directory}"
    assert _mtimes(again) == before
    grown = _cache(tmp_path, data, card, copies=3, messages=messages).prepare()  # copies do not depend on N
    assert "reusing 2, building 1" in messages[-1]
    assert {k: v for k, v in _mtimes(grown).items() if k != "copy_0002.npz"} == before


def test_the_key_changes_with_what_the_copies_depend_on(tmp_path, monkeypatch):
    data, card = _setup("knn_edge_seg")
    key = _cache(tmp_path, data, card).key
    assert _cache(tmp_path, data, card, copies=5).key == key
    assert _cache(tmp_path, data, card, seed=SEED + 1).key != key
    assert _cache(tmp_path, *_setup("knn_edge_seg", k=4)).key != key  # preprocessing
    assert _cache(tmp_path, *_setup("knn_edge_seg", num_points=32)).key != key
    assert _cache(tmp_path, data, card.model_copy(update={"normalization": "none"})).key != key
    assert _cache(tmp_path, data, card.model_copy(update={"data_hash": "0" * 64})).key != key
    spec = get_spec("knn_edge_seg")
    monkeypatch.setitem(model_registry._REGISTRY, spec.name, dataclasses.replace(spec, augment=drop_some_points))
    other = _cache(tmp_path, data, card)
    assert other.key != key and other.fields["augment"].endswith("test_epoch_cache.drop_some_points")
    assert other.directory.name == f"knn_edge_seg-{other.key[:16]}" != f"knn_edge_seg-{key[:16]}"


@pytest.mark.parametrize("arch", ["knn_edge_seg", "pointnet_partseg", "pointnet_cls"])
def test_loaded_copies_equal_recomputing_them(tmp_path, monkeypatch, arch):
    """Every cloud of every copy, as stored, is what prepare_sample + the preprocessor give for its seed;
    with an augmentation that changes the point count, and a scalar input (the part-seg category)."""
    spec = get_spec(arch)
    if arch == "knn_edge_seg":
        monkeypatch.setitem(model_registry._REGISTRY, spec.name, dataclasses.replace(spec, augment=drop_some_points))
        spec = get_spec(arch)
    data, card = _setup(arch)
    cache = _cache(tmp_path, data, card).prepare()
    sizes = set()
    for copy in (0, 1):
        loaded = cache.load(copy)
        for i in range(len(data)):
            arrays, label, seg = loaded.cloud(i)
            points, expected_seg = prepare_sample(data[i], card, np.random.default_rng([SEED, copy, i]), train=True)
            expected = cloud_inputs(spec, card, points, int(data[i].label))
            assert arrays.keys() == expected.keys() and label == data[i].label
            for name in expected:
                assert arrays[name].dtype == expected[name].dtype and np.array_equal(arrays[name], expected[name])
            assert (seg is None) == (expected_seg is None)
            if seg is not None:
                assert np.array_equal(seg, expected_seg)
            sizes.add(len(arrays["points"]))
        live = make_batch(
            spec, card, [cloud_inputs(spec, card, *_fresh(data, card, copy, i)) for i in (0, 1)], [0, 0], None
        )
        cached = make_batch(spec, card, [loaded.cloud(i)[0] for i in (0, 1)], [0, 0], None)
        assert all(np.array_equal(live.inputs[k].numpy(), cached.inputs[k].numpy()) for k in live.inputs)
    assert not np.array_equal(cache.load(0).inputs["points"][:10], cache.load(1).inputs["points"][:10])
    if arch == "knn_edge_seg":
        assert len(sizes) > 1  # the clouds kept different numbers of points


def _fresh(data, card, copy, i):
    points, _ = prepare_sample(data[i], card, np.random.default_rng([SEED, copy, i]), train=True)
    return points, int(data[i].label)


def _arrays(cache: EpochCache, copy: int) -> dict[str, np.ndarray]:
    loaded = load_copy(cache.path(copy), cache.key, copy, len(cache.dataset))
    return {**loaded.inputs, "labels": loaded.labels, "seg": loaded.seg}


def test_a_truncated_or_damaged_copy_is_rebuilt_not_trusted(tmp_path):
    data, card = _setup("knn_edge_seg")
    messages: list[str] = []
    cache = _cache(tmp_path, data, card, messages=messages).prepare()
    original = {c: _arrays(cache, c) for c in (0, 1)}
    first, second = cache.path(0), cache.path(1)
    first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])  # an interrupted copy (not via os.replace)
    raw = bytearray(second.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # a flipped bit inside a stored array: only its CRC tells
    second.write_bytes(bytes(raw))
    for copy in (0, 1):
        with pytest.raises(CacheError):
            load_copy(cache.path(copy), cache.key, copy, len(data))
    (cache.directory / ".copy_0000.npz.x.tmp").write_bytes(b"half")  # a temporary file left by a killed run
    cache = _cache(tmp_path, data, card, messages=messages).prepare()
    assert "reusing 1, building 1" in messages[-1]  # the truncated one fails the start-up check
    loaded = cache.load(1)  # the damaged one fails when read whole for its epoch
    assert "cached epoch 1 is not usable" in messages[-1] and "rebuilding" in messages[-1]
    for copy in (0, 1):
        rebuilt = _arrays(cache, copy)
        assert all(np.array_equal(rebuilt[k], original[copy][k]) for k in original[copy])
    assert np.array_equal(loaded.labels, original[1]["labels"])


def test_a_copy_of_another_key_is_rejected(tmp_path):
    data, card = _setup("knn_edge_seg")
    one = _cache(tmp_path, data, card, copies=1).prepare()
    other = _cache(tmp_path, data, card, copies=1, seed=SEED + 1)
    other.directory.mkdir(parents=True)
    other.path(0).write_bytes(one.path(0).read_bytes())
    with pytest.raises(CacheError, match="another key"):
        load_copy(other.path(0), other.key, 0, len(data))


def test_the_default_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("POINTSERVE_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("POINTSERVE_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "pointserve", "epochs")


def test_training_cycles_the_cached_copies_and_the_second_run_reuses_them(tmp_path, monkeypatch, capsys):
    loads: list[int] = []
    load = EpochCache.load
    monkeypatch.setattr(EpochCache, "load", lambda self, copy: loads.append(copy) or load(self, copy))
    builds: list[list[int]] = []
    monkeypatch.setattr(epoch_cache.EpochCache, "_build", _counting_build(builds))
    cache_dir = tmp_path / "cache"
    flags = ["--model", "knn_edge_seg", "--dataset", SEMANTIC, "--num-points", "64", "--batch-size", "4"]
    flags += ["--threads", "1", "--epochs", "5", "--cache-epochs", "2", "--cache-dir", str(cache_dir)]
    flags += ["--scheduler", "plateau", "--plateau-patience", "1"]
    assert main(["train", *flags, "-o", str(tmp_path / "one")]) == 0
    printed = capsys.readouterr().out
    assert "caching 2 augmented epochs" in printed and "2 cached epochs" in printed
    assert loads == [0, 1, 0, 1, 0] and builds == [[0, 1]]
    folder = next(cache_dir.iterdir())
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert main(["train", *flags, "-o", str(tmp_path / "two")]) == 0
    assert f"reusing 2 cached epochs from {folder}" in capsys.readouterr().out
    assert builds == [[0, 1]] and {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert (tmp_path / "one" / "last" / "model.safetensors").read_bytes() == (
        tmp_path / "two" / "last" / "model.safetensors"
    ).read_bytes()


def _counting_build(builds: list):
    build = EpochCache._build

    def counting(self, copies):
        builds.append(list(copies))
        return build(self, copies)

    return counting
