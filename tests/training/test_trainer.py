"""The training loop end to end on a tiny run: checkpoints, resume, evaluate, the CLI."""

import json
import subprocess
import sys

import pytest

from pointserve.checkpoint import load_checkpoint
from pointserve.cli import main
from pointserve.training.config import TrainConfig
from pointserve.training.trainer import Trainer

TINY = dict(samples_per_class=3, test_samples_per_class=2, num_points=64, batch_size=8, threads=1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(epochs=2, output_dir=str(out), **TINY)
    metrics = Trainer(config).run()
    return out, metrics


def test_training_writes_per_epoch_best_and_last_checkpoints(tiny_run):
    out, metrics = tiny_run
    assert {p.name for p in (out / "epochs").iterdir()} == {"epoch_001", "epoch_002"}
    model, card = load_checkpoint(out / "best")
    assert card.task == "classification" and len(card.class_names) >= 10
    assert card.num_points == 64 and len(card.data_hash) == 64
    assert 0.0 <= metrics["overall_acc"] <= 1.0
    assert json.loads((out / "metrics.json").read_text())["overall_acc"] == metrics["overall_acc"]


def test_resume_continues_from_the_last_epoch(tiny_run, capsys):
    out, _ = tiny_run
    config = TrainConfig(epochs=3, output_dir=str(out), resume=True, **TINY)
    Trainer(config).run()
    assert "resuming after epoch 2" in capsys.readouterr().out
    assert (out / "epochs" / "epoch_003").is_dir()


def test_part_segmentation_trains_and_reports_miou(tmp_path):
    config = TrainConfig(model="pointnet_partseg", epochs=1, output_dir=str(tmp_path), **TINY)
    metrics = Trainer(config).run()
    assert 0.0 < metrics["instance_miou"] <= 1.0
    _, card = load_checkpoint(tmp_path / "best")
    assert card.task == "part_segmentation" and card.needs_category and card.category_parts


def test_evaluate_command_prints_table_and_writes_json(tiny_run, capsys):
    out, _ = tiny_run
    json_path = out / "eval.json"
    assert main(["evaluate", str(out / "best"), "--json", str(json_path)]) == 0
    printed = capsys.readouterr().out
    assert "overall accuracy" in printed and "mean class accuracy" in printed
    assert "per_class_acc" in json.loads(json_path.read_text())


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    bad = tmp_path / "cfg.yaml"
    bad.write_text("epochs: -3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pointserve", "train", "--config", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: training config: epochs")
    assert "Traceback" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "pointserve", "evaluate", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "no such checkpoint" in proc.stderr and "Traceback" not in proc.stderr
