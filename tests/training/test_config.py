from pathlib import Path

import pytest

from pointserve.errors import ConfigError
from pointserve.training.config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_shipped_configs_validate_and_the_classifier_one_is_the_default():
    assert TrainConfig.from_sources(str(CONFIGS / "shapes_cls.yaml"), {}) == TrainConfig(output_dir="runs/pointnet_cls")
    partseg = TrainConfig.from_sources(str(CONFIGS / "shapes_partseg.yaml"), {})
    assert partseg.task == "part_segmentation"


def test_flags_override_the_file_and_unset_flags_keep_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nlr: 0.01\n")
    config = TrainConfig.from_sources(str(path), {"epochs": 7, "lr": None})
    assert (config.epochs, config.lr) == (7, 0.01)


@pytest.mark.parametrize(
    ("text", "message"),
    [("model: pointnet_huge\n", "unknown model"), ("optimizer: sgd\n", "optimizer"), ("- a list\n", "mapping")],
)
def test_bad_configs_name_the_problem(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_sources(str(path), {})
