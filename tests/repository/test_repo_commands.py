"""`pointserve repo list` and `pointserve repo show`."""

from __future__ import annotations

import pytest

from pointserve.card import ModelCard
from pointserve.cli import main
from pointserve.repository import AccuracyInfo, Repository, TensorSpec


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    # rich wraps tables to the terminal width; a wide one keeps every cell whole for the assertions.
    monkeypatch.setenv("COLUMNS", "250")


def _repository(tmp_path) -> Repository:
    card = ModelCard(
        architecture="pointnet_cls",
        config={"num_classes": 2},
        task="classification",
        class_names=["a", "b"],
        num_points=32,
    )
    repo = Repository(tmp_path / "repo")
    spec_in = [TensorSpec(name="points", dtype="float32", shape=["batch", "num_points", 3])]
    spec_out = [TensorSpec(name="logits", dtype="float32", shape=["batch", 2])]
    version = repo.create_version("toy", card=card, inputs=spec_in, outputs=spec_out, export_report={"opset": 18})
    (tmp_path / "g.onnx").write_bytes(b"graph bytes")
    version.add_variant("fp32", tmp_path / "g.onnx", precision="fp32", backend="onnxruntime")
    acc = AccuracyInfo(
        dataset="shapes",
        num_samples=5,
        overall_acc=0.8,
        mean_class_acc=0.75,
        agreement_with_fp32=1.0,
        max_abs_logit_diff=0.0,
    )
    version.set_accuracy("fp32", acc)
    return repo


def test_repo_list_and_show(tmp_path, capsys):
    repo = _repository(tmp_path)
    assert main(["repo", "list", "--repository", str(repo.root)]) == 0
    out = capsys.readouterr().out
    assert "toy" in out and "fp32" in out and "classification" in out
    assert main(["repo", "show", "toy", "--repository", str(repo.root), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "points" in out and "80.00%" in out and " ok" in out and "opset=18" in out
    assert main(["repo", "show", str(repo.root / "toy" / "1")]) == 0  # a version folder works too


def test_repo_show_flags_a_tampered_file(tmp_path, capsys):
    repo = _repository(tmp_path)
    (repo.root / "toy" / "1" / "fp32.onnx").write_bytes(b"GRAPH bytes")
    assert main(["repo", "show", "toy:1", "--repository", str(repo.root), "--verify"]) == 0
    assert "BAD" in capsys.readouterr().out


def test_repo_errors(tmp_path, capsys):
    assert main(["repo", "list", "--repository", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    repo = _repository(tmp_path)
    assert main(["repo", "show", "nope", "--repository", str(repo.root)]) == 2
    assert "no model 'nope'" in capsys.readouterr().err
