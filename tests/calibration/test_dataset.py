"""Calibration sets: training clouds with the training transforms, a plain .npz with a reproducible hash."""

from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np
import pytest
from calibration_cases import CALIBRATION_SAMPLES, NUM_POINTS

from pointserve.calibration import CalibrationSet, build_calibration_set
from pointserve.calibration.dataset import npz_bytes
from pointserve.data.transforms import normalize
from pointserve.errors import CalibrationError


def test_npz_holds_plain_arrays_and_its_recorded_hash(classifier_calibration, classifier_version, train_split):
    calibration = classifier_calibration
    assert calibration.path.parent == classifier_version.calibration_dir
    assert calibration.path.name == f"shapes-train-n{CALIBRATION_SAMPLES}-s0.npz"
    assert calibration.sha256 == hashlib.sha256(calibration.path.read_bytes()).hexdigest()
    with np.load(calibration.path, allow_pickle=False) as npz:  # no object arrays anywhere
        arrays = {k: npz[k] for k in npz.files}
    assert set(arrays) == {"points", "label", "source_index", "meta_json"}
    points = arrays["points"]
    assert points.shape == (CALIBRATION_SAMPLES, NUM_POINTS, 3) and points.dtype == np.float32
    assert arrays["label"].dtype == np.int64 and arrays["source_index"].dtype == np.int64
    np.testing.assert_array_equal(arrays["label"], [train_split[int(i)].label for i in arrays["source_index"]])
    meta = json.loads(str(arrays["meta_json"]))
    recorded = (meta["seed"], meta["num_samples"], meta["num_points"], meta["split"])
    assert recorded == (0, CALIBRATION_SAMPLES, NUM_POINTS, "train")
    assert meta["source_data_hash"] == train_split.content_hash()
    # Drawn without replacement while the split lasts.
    assert len(set(arrays["source_index"].tolist())) == CALIBRATION_SAMPLES


def test_clouds_are_augmented_then_normalised_like_training_clouds(classifier_calibration, train_split):
    arrays = classifier_calibration.arrays()
    radii = np.linalg.norm(arrays["points"], axis=2).max(axis=1)
    np.testing.assert_allclose(radii, 1.0, atol=1e-5)  # unit_sphere normalisation comes last
    for cloud, index in zip(arrays["points"][:8], arrays["source_index"][:8], strict=True):
        plain = normalize(train_split[int(index)].points, "unit_sphere")
        # Same object, but rotated / scaled / jittered / shuffled: no point sits where it was.
        assert not np.allclose(np.sort(cloud[:, 1]), np.sort(plain[:, 1]), atol=1e-3)


def test_same_recipe_gives_the_same_bytes_and_another_seed_does_not(classifier_version, train_split, tmp_path):
    card = classifier_version.card
    first = build_calibration_set(card, tmp_path / "a", num_samples=12, seed=3, dataset=train_split)
    again = build_calibration_set(card, tmp_path / "b", num_samples=12, seed=3, dataset=train_split)
    other = build_calibration_set(card, tmp_path / "c", num_samples=12, seed=4, dataset=train_split)
    assert first.sha256 == again.sha256
    assert first.path.read_bytes() == again.path.read_bytes()
    assert other.sha256 != first.sha256 and other.seed == 4


def test_existing_set_is_reused_untouched(classifier_version, train_split, tmp_path):
    card = classifier_version.card
    first = build_calibration_set(card, tmp_path, num_samples=8, dataset=train_split)
    stamp = first.path.stat().st_mtime_ns
    second = build_calibration_set(card, tmp_path, num_samples=8, dataset=train_split)
    assert second == first and second.path.stat().st_mtime_ns == stamp


def test_more_samples_than_clouds_cycles_through_the_split(classifier_version, train_split, tmp_path):
    count = len(train_split) + 5
    big = build_calibration_set(classifier_version.card, tmp_path, num_samples=count, dataset=train_split)
    indices = big.arrays()["source_index"]
    assert len(set(indices[: len(train_split)].tolist())) == len(train_split)


def test_part_segmentation_set_carries_the_category_input(part_segmenter):
    card, _, calibration = part_segmenter
    arrays = calibration.arrays()
    assert calibration.has_category
    np.testing.assert_array_equal(arrays["category"], arrays["label"])
    assert arrays["category"].dtype == np.int64
    assert arrays["category"].max() < len(card.class_names)


def test_npz_bytes_are_what_np_savez_would_store(tmp_path):
    arrays = {"points": np.ones((2, 3, 3), np.float32), "meta_json": np.array('{"seed": 0}')}
    path = tmp_path / "x.npz"
    path.write_bytes(npz_bytes(arrays))
    reference = tmp_path / "ref.npz"
    np.savez(reference, **arrays)
    with np.load(path, allow_pickle=False) as ours, np.load(reference, allow_pickle=False) as theirs:
        assert sorted(ours.files) == sorted(theirs.files)
        for key in ours.files:
            np.testing.assert_array_equal(ours[key], theirs[key])
    assert {i.date_time for i in zipfile.ZipFile(path).infolist()} == {(1980, 1, 1, 0, 0, 0)}


@pytest.mark.parametrize(
    "content,message",
    [
        ({"points": np.array([object()], dtype=object)}, "not a readable calibration"),
        ({"label": np.zeros(3, np.int64)}, "'points'"),
        ({"points": np.zeros((2, 4, 3), np.float32)}, "meta_json"),
    ],
)
def test_malformed_sets_are_refused_with_the_file_named(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **content)
    with pytest.raises(CalibrationError, match=message) as info:
        CalibrationSet.load(path)
    assert "bad.npz" in str(info.value)
