import json

import pytest
import torch

from pointserve.card import ModelCard
from pointserve.checkpoint import load_checkpoint, save_checkpoint
from pointserve.errors import CheckpointError
from pointserve.models import get_model


def _card(**kw):
    base = dict(
        architecture="pointnet_cls",
        config={"num_classes": 3},
        task="classification",
        class_names=["a", "b", "c"],
        num_points=64,
    )
    base.update(kw)
    return ModelCard(**base)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    model = get_model("pointnet_cls", num_classes=3).eval()
    save_checkpoint(model, _card(), tmp_path / "ck")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["card.json", "model.safetensors"]
    loaded, card = load_checkpoint(tmp_path / "ck")
    x = torch.randn(2, 50, 3)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert card.class_names == ["a", "b", "c"] and card.num_outputs == 3


def test_pickle_checkpoints_are_refused_with_a_clear_error(tmp_path):
    pth = tmp_path / "model.pth"
    torch.save({"x": torch.zeros(1)}, pth)
    with pytest.raises(CheckpointError, match="pickled checkpoints are not loaded"):
        load_checkpoint(pth)


def test_bad_card_and_bad_weights_name_the_file(tmp_path):
    ck = tmp_path / "ck"
    save_checkpoint(get_model("pointnet_cls", num_classes=3), _card(), ck)
    (ck / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(ck)
    card = json.loads((ck / "card.json").read_text())
    card["task"] = "dancing"
    (ck / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"card.json.*task"):
        load_checkpoint(ck)


def test_weights_that_do_not_match_the_card_are_refused(tmp_path):
    ck = tmp_path / "ck"
    save_checkpoint(get_model("pointnet_cls", num_classes=3), _card(config={"num_classes": 3}), ck)
    card = _card(config={"num_classes": 3, "feature_transform": True})
    card.save(ck)
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(ck)
