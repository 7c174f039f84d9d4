"""``pointserve export``: a checkpoint becomes a repository version with a verified fp32 variant."""

from __future__ import annotations

import json

import onnxruntime as ort
from export_cases import cls_card

from pointserve.cli import main
from pointserve.repository import Repository


def test_export_command_creates_a_version_with_the_fp32_variant(cls_checkpoint, tmp_path, capsys):
    repository = tmp_path / "repository"
    assert main(["export", str(cls_checkpoint), "-o", str(repository), "--name", "tiny-cls"]) == 0
    printed = capsys.readouterr().out
    assert "exported tiny-cls v1" in printed and "max |Δlogit|" in printed

    version = Repository(repository).open("tiny-cls")
    assert version.version == 1
    fp32 = version.variant("fp32")
    assert (fp32.precision, fp32.backend, fp32.file) == ("fp32", "onnxruntime", "fp32.onnx")
    path = version.variant_path("fp32")  # size and sha256 checked against the manifest
    report = version.manifest.export
    assert report["sha256"] == fp32.sha256 and report["opset"] >= 17
    assert len(report["parity"]) >= 4 and all(p["max_abs_diff"] <= 1e-4 for p in report["parity"])
    assert {p["num_points"] for p in report["parity"]} >= {1, 777, 2048}
    assert [s.name for s in version.manifest.inputs] == ["points"]
    assert version.manifest.outputs[0].shape == ["batch", len(cls_card().class_names)]
    assert version.card.class_names == cls_card().class_names
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["points"]
    # The manifest on disk is plain JSON with the export report in it.
    assert json.loads(version.manifest_path.read_text())["export"]["parity"][0]["argmax_equal"] is True
    # Nothing half-written is left beside the version.
    assert not [p for p in repository.iterdir() if p.name.startswith(".export-")]


def test_export_command_default_name_comes_from_the_card(cls_checkpoint):
    from pointserve.card import ModelCard
    from pointserve.repository.publish import default_model_name

    assert default_model_name(ModelCard.load(cls_checkpoint)) == "shapes-cls"


def test_export_of_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "-o", str(tmp_path / "repo")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "nope" in err
    assert not (tmp_path / "repo").exists()
