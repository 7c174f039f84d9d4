import numpy as np
import pytest

from pointserve.data import load_dataset
from pointserve.data.shapes import CATEGORY_PARTS, CLASS_NAMES, PART_NAMES
from pointserve.errors import ConfigError


def test_shapes_is_deterministic_from_seed_and_differs_across_seeds_and_splits():
    a = load_dataset("shapes", "test", num_points=64, samples_per_class=2)
    b = load_dataset("shapes", "test", num_points=64, samples_per_class=2)
    c = load_dataset("shapes", "test", num_points=64, samples_per_class=2, seed=1)
    d = load_dataset("shapes", "train", num_points=64, samples_per_class=2)
    assert a.content_hash() == b.content_hash()
    assert a.content_hash() != c.content_hash()
    assert a.content_hash() != d.content_hash()


def test_shapes_has_at_least_ten_classes_made_of_named_parts():
    assert len(CLASS_NAMES) >= 10
    for name in CLASS_NAMES:
        assert len(CATEGORY_PARTS[name]) >= 2, name
        assert all(PART_NAMES[p].startswith(name + "/") for p in CATEGORY_PARTS[name])
    assert sorted(p for parts in CATEGORY_PARTS.values() for p in parts) == list(range(len(PART_NAMES)))


def test_part_segmentation_labels_stay_within_each_objects_category():
    ds = load_dataset("shapes", "train", task="part_segmentation", num_points=200, samples_per_class=3)
    assert ds.task == "part_segmentation" and ds.part_names == PART_NAMES
    seen_parts = set()
    for sample in ds.samples:
        assert sample.points.shape == (200, 3) and sample.points.dtype == np.float32
        allowed = set(CATEGORY_PARTS[CLASS_NAMES[sample.label]])
        assert set(np.unique(sample.seg)) <= allowed
        seen_parts |= set(np.unique(sample.seg).tolist())
    assert len(seen_parts) > len(CLASS_NAMES)  # objects really have several parts


def test_shapes_rejects_unknown_split_and_task():
    with pytest.raises(ConfigError, match="splits"):
        load_dataset("shapes", "validation-ish")
    with pytest.raises(ConfigError, match="semantic_segmentation"):
        load_dataset("shapes", "train", task="semantic_segmentation")
