"""Bit-identical training on CPU: two runs with one seed, and a run resumed after an interruption, give the same
weights as an uninterrupted run, for a repeat-collated family (pointnet_cls, with dropout) and concat ones with
CPU-computed neighbourhoods (the test-only knn_edge_seg, and pcn), with live and with cached augmented epochs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import SEMANTIC

import pointserve.training.trainer as trainer_module
from pointserve.training.config import TrainConfig
from pointserve.training.trainer import STATE_JSON, Trainer

pytestmark = pytest.mark.usefixtures("tiny_semantic_dataset")


# Each run: 3 epochs of a few batches (shapes: 36 clouds in batches of 8; semantic: 9 clouds in batches of 4, the
# last one of one dropped). The cached variants also use the plateau schedule with no patience, so its state
# (a best accuracy, a count of bad epochs, an -inf) decides the rate of every epoch and must survive the resume.
SETTINGS = {
    "pointnet_cls": dict(model="pointnet_cls", samples_per_class=3, test_samples_per_class=2, batch_size=8),
    "knn_edge_seg": dict(model="knn_edge_seg", dataset=SEMANTIC, batch_size=4),
    # pcn: shrinking augmentation, four neighbourhood levels, index_add_ in the training form, dropout
    "pcn_cls_small": dict(model="pcn_cls_small", samples_per_class=3, test_samples_per_class=2, batch_size=8),
}
COMMON = dict(num_points=64, threads=1, epochs=3, seed=7)
CACHED = dict(cache_epochs=2, scheduler="plateau", plateau_patience=0, plateau_factor=0.5)


class Interrupted(Exception):
    pass


def _config(out, model: str, cached: bool, cache_dir, **extra) -> TrainConfig:
    options = {**SETTINGS[model], **COMMON, **(CACHED if cached else {}), **extra}
    if cached:
        options["cache_dir"] = str(cache_dir)
    return TrainConfig(output_dir=str(out), **options)


def _stop_at_epoch_two(patch: pytest.MonkeyPatch, where: str) -> None:
    """Make a run stop at epoch 2: before it trains (``train``), or after it wrote epoch 2's weights into
    ``last/`` but before its training state (``state``: the window a kill while saving would hit)."""
    if where == "train":
        train_epoch = Trainer._train_epoch

        def stopping_train_epoch(self, *args):
            if args[-1] == 2:
                raise Interrupted
            return train_epoch(self, *args)

        patch.setattr(Trainer, "_train_epoch", stopping_train_epoch)
    else:
        save_state = trainer_module._save_training_state

        def stopping_save_state(directory, optimizer, scheduler, scaler, epoch, *rest):
            if epoch == 2:
                raise Interrupted
            return save_state(directory, optimizer, scheduler, scaler, epoch, *rest)

        patch.setattr(trainer_module, "_save_training_state", stopping_save_state)


def _interrupted_then_resumed(out, model, cached, cache_dir, where: str = "train") -> None:
    """Run the 3-epoch config, stop it at epoch 2, and resume it with the same config."""
    with pytest.MonkeyPatch.context() as patch:
        _stop_at_epoch_two(patch, where)
        with pytest.raises(Interrupted):
            Trainer(_config(out, model, cached, cache_dir)).run()
    Trainer(_config(out, model, cached, cache_dir, resume=True)).run()


def _weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _assert_same_weights(a, b) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    different = [name for name in wa if not torch.equal(wa[name], wb[name])]
    assert not different, f"weights differ: {different[:5]}"


@pytest.fixture(
    scope="module",
    params=[(m, c) for m in SETTINGS for c in (False, True)],
    ids=lambda p: f"{p[0]}-{'cached' if p[1] else 'live'}",
)
def runs(request, tmp_path_factory):
    """Two uninterrupted runs and one interrupted after epoch 1 and resumed, for one family and data path."""
    model, cached = request.param
    root = tmp_path_factory.mktemp(f"det-{model}-{cached}")
    cache_dir = root / "cache"
    for name in ("first", "second"):
        Trainer(_config(root / name, model, cached, cache_dir)).run()
    _interrupted_then_resumed(root / "resumed", model, cached, cache_dir)
    return root, model, cached


def test_two_runs_with_one_seed_give_identical_bytes(runs):
    root, _, _ = runs
    assert (root / "first" / "best" / "model.safetensors").read_bytes() == (
        root / "second" / "best" / "model.safetensors"
    ).read_bytes()
    _assert_same_weights(root / "first" / "last", root / "second" / "last")


def test_a_run_resumed_after_epoch_one_equals_the_uninterrupted_one(runs):
    root, _, cached = runs
    _assert_same_weights(root / "first" / "last", root / "resumed" / "last")
    for epoch in (2, 3):
        _assert_same_weights(
            root / "first" / "epochs" / f"epoch_{epoch:03d}", root / "resumed" / "epochs" / f"epoch_{epoch:03d}"
        )
    first = json.loads((root / "first" / "last" / STATE_JSON).read_text())
    resumed = json.loads((root / "resumed" / "last" / STATE_JSON).read_text())
    assert first["scheduler"] == resumed["scheduler"] and first["numpy_rng"] == resumed["numpy_rng"]
    if cached:
        assert first["scheduler"]["last_epoch"] == 3 and math.isfinite(first["scheduler"]["best"])


def test_plateau_state_keeps_its_infinities_through_json(tmp_path):
    """ReduceLROnPlateau's state holds -inf (``mode_worse``); it is saved as JSON and must load back as it was."""
    Trainer(_config(tmp_path, "knn_edge_seg", True, tmp_path / "cache", epochs=2)).run()
    state = json.loads((tmp_path / "last" / STATE_JSON).read_text())["scheduler"]
    assert state["mode_worse"] == -math.inf and state["mode"] == "max" and math.isfinite(state["best"])
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max")
    scheduler.load_state_dict(state)
    assert scheduler.state_dict() == state
    assert trainer_module._read_training_state(tmp_path / "last")["scheduler"] == state  # the metadata copy


def test_a_run_stopped_between_weights_and_state_resumes_from_the_matching_epoch(tmp_path):
    """Killed after writing epoch 2's weights into last/ but before its state: resume must not mix epochs."""
    reference = tmp_path / "reference"
    Trainer(_config(reference, "knn_edge_seg", False, None)).run()
    _interrupted_then_resumed(tmp_path / "crashed", "knn_edge_seg", False, None, where="state")
    _assert_same_weights(reference / "last", tmp_path / "crashed" / "last")


def test_torch_settings_are_restored_after_a_run(tmp_path):
    threads = torch.get_num_threads()
    Trainer(_config(tmp_path, "knn_edge_seg", False, None, epochs=1, threads=threads + 1)).run()
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == threads
