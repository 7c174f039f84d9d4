"""`pointserve build`, `evaluate-variants` and `doctor` end to end on tiny real models."""

from __future__ import annotations

import numpy as np
import pytest

from pointserve.cli import main
from pointserve.engines import create_runner
from pointserve.repository import Repository
from pointserve.repository.store import load_manifest


@pytest.fixture
def cls_version(repository):
    return repository.open("tiny-cls")


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    # rich wraps tables to the terminal width; a wide one keeps every cell whole for the assertions.
    monkeypatch.setenv("COLUMNS", "250")


def test_build_makes_the_fp16_variant_and_keeps_it_next_time(cls_version, tiny_models, capsys):
    assert main(["build", str(cls_version.path), "--precision", "fp16,tf32"]) == 0
    out = capsys.readouterr().out
    assert "fp16" in out and "built" in out and "shared" in out
    manifest = load_manifest(cls_version.manifest_path)
    fp16 = manifest.variant("fp16")
    assert (fp16.precision, fp16.backend, fp16.source) == ("fp16", "onnxruntime", "fp32")
    assert not list(cls_version.path.glob(".build-*"))  # the work folder is gone
    assert main(["build", str(cls_version.path), "--precision", "fp16"]) == 0
    assert "kept" in capsys.readouterr().out
    assert load_manifest(cls_version.manifest_path).variant("fp16").sha256 == fp16.sha256


def test_build_int8_records_its_calibration(cls_version, capsys):
    argv = ["build", str(cls_version.path), "--precision", "int8", "--calibration-samples", "8"]
    assert main(argv) == 0
    int8 = load_manifest(cls_version.manifest_path).variant("int8")
    assert (int8.precision, int8.source) == ("int8", "fp32")
    assert int8.calibration.method == "minmax" and int8.calibration.num_samples == 8
    calib_file = cls_version.path / int8.calibration.file
    assert calib_file.is_file() and calib_file.parent.name == "calibration"
    from pointserve.repository.store import sha256_file

    assert sha256_file(calib_file) == int8.calibration.data_hash
    assert (cls_version.path / int8.file).stat().st_mode & 0o777 == 0o644


def test_reference_weights_kept_in_the_version_serve_as_the_reference(cls_version, tiny_models):
    checkpoint = str(tiny_models["cls"]["checkpoint"])
    assert main(["build", str(cls_version.path), "--precision", "fp32", "--checkpoint", checkpoint]) == 0
    variant = load_manifest(cls_version.manifest_path).variant("fp32-torch")
    assert (variant.backend, variant.precision) == ("torch", "fp32")
    # The torch runner loads the kept weights with the manifest's card and agrees with the ONNX graph.
    points = np.random.default_rng(0).uniform(-1, 1, (2, 50, 3)).astype(np.float32)
    version = Repository(cls_version.path.parent.parent).open("tiny-cls")
    with create_runner(version, "fp32-torch") as torch_runner, create_runner(version, "fp32") as ort_runner:
        feeds = {"points": points}
        np.testing.assert_allclose(torch_runner.infer(feeds)["logits"], ort_runner.infer(feeds)["logits"], atol=1e-4)
    # ... and evaluate-variants needs no --checkpoint any more
    assert main(["evaluate-variants", str(cls_version.path), "--max-samples", "4"]) == 0
    assert load_manifest(cls_version.manifest_path).reference_accuracy.num_samples == 4


def test_build_errors_are_one_line(repository, tmp_path, capsys):
    assert main(["build", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert main(["build", "tiny-cls", "--repository", str(repository.root), "--precision", "bf16"]) == 2
    assert "unknown precision 'bf16'" in capsys.readouterr().err
    assert main(["build", "tiny-cls", "--repository", str(repository.root), "--backend", "tensorrt"]) == 2
    assert "TensorRT builds need the tensorrt package" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["cls", "seg"])
def test_evaluate_variants_writes_accuracy_into_the_manifest(repository, tiny_models, key, capsys):
    version = repository.open(f"tiny-{key}")
    checkpoint = str(tiny_models[key]["checkpoint"])
    argv = ["evaluate-variants", str(version.path), "--max-samples", "12", "--checkpoint", checkpoint, "--markdown"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "agreement with fp32" in out and "pytorch fp32" in out
    manifest = load_manifest(version.manifest_path)
    reference, fp32 = manifest.reference_accuracy, manifest.variant("fp32").accuracy
    assert reference.num_samples == fp32.num_samples == 12 and reference.dataset == "shapes"
    assert fp32.agreement_with_fp32 == 1.0 and fp32.max_abs_logit_diff <= 1e-4
    assert abs(fp32.overall_acc - reference.overall_acc) < 1e-9
    if key == "seg":
        assert fp32.mean_iou is not None and fp32.mean_class_acc is None
        assert "| variant | overall acc | mIoU |" in out
    else:
        assert fp32.mean_class_acc is not None


def test_evaluate_variants_needs_a_reference(cls_version, capsys):
    assert main(["evaluate-variants", str(cls_version.path), "--max-samples", "4"]) == 2
    assert "pass --checkpoint" in capsys.readouterr().err


def test_doctor_reports_and_measures(cls_version, tiny_models, capsys):
    assert main(["doctor"]) == 0
    assert "onnxruntime providers" in capsys.readouterr().out
    argv = ["doctor", str(cls_version.path), "--throughput", "--checkpoint", str(tiny_models["cls"]["checkpoint"])]
    assert main([*argv, "--batches", "1,2", "--num-points", "64", "--repeats", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "pytorch eager fp32" in out and "onnxruntime cpu fp32" in out and "B=2 clouds/s" in out
    assert main(["doctor", "--gpu"]) == 2  # needs a model
