"""Session fixtures: a briefly trained classifier exported through ``pointserve export`` into a real
repository, and a random part segmenter's fp32 graph, each with a calibration set (built once)."""

from __future__ import annotations

import pytest
from calibration_cases import (
    CALIBRATION_SAMPLES,
    NUM_POINTS,
    class_subset,
    random_part_segmenter,
    train_classifier,
)

from pointserve.cli import main
from pointserve.repository import Repository

PARITY_SHAPES = [(1, NUM_POINTS), (4, 512), (3, 777), (1, 1)]


@pytest.fixture(scope="session")
def train_split():
    return class_subset("train", 20)


@pytest.fixture(scope="session")
def test_split():
    return class_subset("test", 40)


@pytest.fixture(scope="session")
def classifier_version(tmp_path_factory, train_split):
    """``repository/shapes4-cls/1`` with the fp32 variant, made by the real command."""
    tmp = tmp_path_factory.mktemp("calibration")
    checkpoint = train_classifier(tmp / "checkpoint", train_split)
    assert main(["export", str(checkpoint), "-o", str(tmp / "repository"), "--name", "shapes4-cls"]) == 0
    return Repository(tmp / "repository").open("shapes4-cls")


@pytest.fixture(scope="session")
def classifier_calibration(classifier_version, train_split):
    from pointserve.calibration import build_calibration_set

    return build_calibration_set(
        classifier_version.card,
        classifier_version.calibration_dir,
        num_samples=CALIBRATION_SAMPLES,
        dataset=train_split,
    )


@pytest.fixture(scope="session")
def part_segmenter(tmp_path_factory):
    """``(card, fp32.onnx, calibration set)`` of a random-weight part segmenter."""
    from pointserve.calibration import build_calibration_set
    from pointserve.checkpoint import load_checkpoint
    from pointserve.data import load_dataset
    from pointserve.export import export_onnx

    tmp = tmp_path_factory.mktemp("partseg")
    checkpoint = random_part_segmenter(tmp / "checkpoint")
    _, card = load_checkpoint(checkpoint)
    export_onnx(checkpoint, tmp / "fp32.onnx", parity_shapes=PARITY_SHAPES)
    train = load_dataset("shapes", "train", task="part_segmentation", num_points=NUM_POINTS, samples_per_class=2)
    calibration = build_calibration_set(card, tmp / "calibration", num_samples=16, dataset=train)
    return card, tmp / "fp32.onnx", calibration
