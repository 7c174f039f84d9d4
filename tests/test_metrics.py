import numpy as np
import pytest

from pointserve.metrics import (
    classification_metrics,
    part_segmentation_metrics,
    restrict_to_category,
    shape_iou,
)


def test_classification_metrics_counts_per_class():
    labels = np.array([0, 0, 0, 1, 2, 2])
    preds = np.array([0, 0, 1, 1, 2, 0])
    m = classification_metrics(preds, labels, ["a", "b", "c", "unused"])
    assert m["overall_acc"] == pytest.approx(4 / 6)
    assert m["per_class_acc"] == pytest.approx({"a": 2 / 3, "b": 1.0, "c": 0.5})
    assert m["mean_class_acc"] == pytest.approx((2 / 3 + 1 + 0.5) / 3)
    assert "unused" not in m["per_class_acc"]


def test_shape_iou_counts_absent_parts_as_one():
    seg = np.array([4, 4, 5, 5])
    pred = np.array([4, 5, 5, 5])
    # part 4: inter 1 / union 2; part 5: inter 2 / union 3; part 6 absent from both: 1
    assert shape_iou(pred, seg, [4, 5, 6]) == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)


def test_restrict_to_category_ignores_other_categories_parts():
    logits = np.zeros((1, 2, 4), dtype=np.float32)
    logits[0, :, 3] = 10.0  # part 3 belongs to category 1, the shape is category 0
    logits[0, 0, 1] = 1.0
    preds = restrict_to_category(logits, np.array([0]), [[0, 1], [2, 3]])
    assert preds.tolist() == [[1, 0]]


def test_part_segmentation_metrics_instance_and_class_miou():
    seg = np.array([[0, 1], [0, 0], [2, 2]])
    pred = np.array([[0, 1], [0, 1], [2, 2]])
    cats = np.array([0, 0, 1])
    m = part_segmentation_metrics(pred, seg, cats, ["x", "y"], [[0, 1], [2]])
    # shape 0 perfect (1.0); shape 1: part0 1/2, part1 0/1 -> 0.25; shape 2 perfect
    assert m["instance_miou"] == pytest.approx((1 + 0.25 + 1) / 3)
    assert m["per_category_miou"] == pytest.approx({"x": 0.625, "y": 1.0})
    assert m["class_miou"] == pytest.approx(0.8125)
