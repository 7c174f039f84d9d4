"""The repository on disk: manifest round trip, atomic writes, integrity checks."""

from __future__ import annotations

import json
import os

import pytest

from pointserve.card import ModelCard
from pointserve.errors import IntegrityError, ModelNotFoundError, RepositoryError
from pointserve.repository import (
    AccuracyInfo,
    BuildInfo,
    CalibrationInfo,
    Manifest,
    Repository,
    TensorSpec,
    atomic_write_bytes,
    sha256_file,
)
from pointserve.repository import store as store_module
from pointserve.repository.store import load_manifest


def _card() -> ModelCard:
    return ModelCard(
        architecture="pointnet_cls",
        config={"num_classes": 3},
        task="classification",
        class_names=["a", "b", "c"],
        num_points=64,
    )


def _specs():
    inputs = [TensorSpec(name="points", dtype="float32", shape=["batch", "num_points", 3])]
    outputs = [TensorSpec(name="logits", dtype="float32", shape=["batch", 3])]
    return inputs, outputs


@pytest.fixture
def version(tmp_path):
    inputs, outputs = _specs()
    repo = Repository(tmp_path / "repo")
    return repo.create_version("toy", card=_card(), inputs=inputs, outputs=outputs, export_report={"opset": 18})


def _file(tmp_path, name: str, payload: bytes):
    path = tmp_path / name
    path.write_bytes(payload)
    return path


def test_manifest_round_trip_with_every_record(version, tmp_path):
    build = BuildInfo(
        gpu_name="NVIDIA H100",
        compute_capability="9.0",
        tensorrt_version="11.0.0",
        min_shape={"points": [1, 1, 3]},
        opt_shape={"points": [64, 64, 3]},
        max_shape={"points": [64, 128, 3]},
        workspace_mib=1024,
        builder_flags=["TF32"],
    )
    calib = CalibrationInfo(method="minmax", num_samples=8, seed=0, data_hash="ab" * 32, file="calibration/c.npz")
    acc = AccuracyInfo(dataset="shapes", num_samples=10, overall_acc=0.9, agreement_with_fp32=1.0, max_abs_logit_diff=0)
    version.add_variant("fp32", _file(tmp_path, "a.onnx", b"graph"), precision="fp32", backend="onnxruntime")
    version.add_variant(
        "int8", _file(tmp_path, "b.onnx", b"qdq"), precision="int8", backend="onnxruntime", calibration=calib
    )
    version.add_variant(
        "tf32-tensorrt", _file(tmp_path, "p.plan", b"plan"), precision="tf32", backend="tensorrt", built_for=build
    )
    version.set_accuracy("int8", acc)
    version.set_reference_accuracy(acc)

    reopened = Repository(version.path.parent.parent).open("toy")
    assert reopened.manifest == version.manifest
    assert Manifest.model_validate_json(version.manifest_path.read_text()) == reopened.manifest
    assert reopened.manifest.variant("int8").accuracy == acc
    assert reopened.manifest.variant("tf32-tensorrt").built_for.builder_flags == ["TF32"]
    assert reopened.manifest.export == {"opset": 18}
    assert reopened.variant_path("tf32-tensorrt").read_bytes() == b"plan"


def test_versions_and_lookup(tmp_path):
    inputs, outputs = _specs()
    repo = Repository(tmp_path / "repo")
    assert repo.models() == []
    first = repo.create_version("toy", card=_card(), inputs=inputs, outputs=outputs, export_report={})
    second = repo.create_version("toy", first.manifest)
    assert (first.version, second.version) == (1, 2)
    assert repo.models() == ["toy"] and repo.versions("toy") == [1, 2]
    assert repo.open("toy").version == 2 and repo.open("toy", 1).version == 1
    with pytest.raises(ModelNotFoundError, match="no version 7"):
        repo.open("toy", 7)
    with pytest.raises(ModelNotFoundError, match="no model 'nope'"):
        repo.open("nope")
    with pytest.raises(ModelNotFoundError, match="no variant 'fp16'"):
        first.variant_path("fp16")
    with pytest.raises(RepositoryError, match="invalid model name"):
        repo.create_version("../escape", first.manifest)


def test_add_variant_records_hash_and_moves_the_file(version, tmp_path):
    src = _file(tmp_path, "model.onnx", b"0123456789")
    variant = version.add_variant("fp32", src, precision="fp32", backend="onnxruntime")
    assert not src.exists()  # moved
    placed = version.path / variant.file
    assert variant.sha256 == sha256_file(placed) and variant.size_bytes == 10
    kept = _file(tmp_path, "copy.onnx", b"abc")
    version.add_variant("fp16", kept, precision="fp16", backend="onnxruntime", move=False)
    assert kept.exists()


def test_replacing_a_variant_never_overwrites_the_file_the_manifest_names(version, tmp_path):
    first = version.add_variant("fp32", _file(tmp_path, "a.onnx", b"old"), precision="fp32", backend="onnxruntime")
    second = version.add_variant("fp32", _file(tmp_path, "b.onnx", b"new"), precision="fp32", backend="onnxruntime")
    assert first.file != second.file
    assert not (version.path / first.file).exists()  # the replaced file is removed after the manifest moved on
    assert version.variant_path("fp32").read_bytes() == b"new"
    assert [v.name for v in load_manifest(version.manifest_path).variants] == ["fp32"]


def test_crash_between_file_and_manifest_leaves_the_old_manifest_valid(version, tmp_path, monkeypatch):
    version.add_variant("fp32", _file(tmp_path, "a.onnx", b"old graph"), precision="fp32", backend="onnxruntime")

    def crash(*args, **kwargs):
        raise OSError("simulated crash while writing the manifest")

    # The variant file is placed, then the manifest write dies: the manifest on disk must still be the old
    # one, and every file it names must still verify.
    monkeypatch.setattr(store_module.ModelVersion, "save_manifest", crash)
    with pytest.raises(OSError, match="simulated crash"):
        version.add_variant("fp32", _file(tmp_path, "b.onnx", b"new graph"), precision="fp32", backend="onnxruntime")
    monkeypatch.undo()
    reopened = Repository(version.path.parent.parent).open("toy")
    assert reopened.variant_path("fp32").read_bytes() == b"old graph"


def test_leftover_tmp_file_is_ignored(version, tmp_path):
    version.add_variant("fp32", _file(tmp_path, "a.onnx", b"graph"), precision="fp32", backend="onnxruntime")
    # What a process killed in the middle of atomic_write leaves behind: a partial hidden temporary file.
    leftover = version.path / f".manifest.json{store_module.TMP_MARK}999-dead"
    leftover.write_text('{"name": "toy", "vers')
    partial = version.path / f".fp32.onnx{store_module.TMP_MARK}999-beef"
    partial.write_bytes(b"gr")
    reopened = Repository(version.path.parent.parent).open("toy")
    assert reopened.variant_path("fp32").read_bytes() == b"graph"
    assert set(reopened.leftover_tmp_files()) == {leftover, partial}
    # A half-created version folder (renamed into place only when complete) is not a version.
    (version.path.parent / f".2{store_module.TMP_MARK}1-x").mkdir()
    assert Repository(version.path.parent.parent).versions("toy") == [1]


def test_atomic_write_failure_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    atomic_write_bytes(target, b"old")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # the temporary file was cleaned up


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:3]), "half written"),  # truncated
        (lambda p: p.write_bytes(b"X" + p.read_bytes()[1:]), "tampered"),  # same size, other bytes
        (lambda p: p.unlink(), "missing"),
    ],
)
def test_damaged_variant_file_is_refused_naming_it(version, tmp_path, damage, message):
    variant = version.add_variant(
        "fp32", _file(tmp_path, "a.onnx", b"0123456789"), precision="fp32", backend="onnxruntime"
    )
    path = version.path / variant.file
    damage(path)
    with pytest.raises(IntegrityError, match=message) as info:
        Repository(version.path.parent.parent).open("toy").variant_path("fp32")
    assert str(path) in str(info.value)
    assert version.variant_path("fp32", verify=False) == path


def test_malformed_manifest_is_a_clear_error(version):
    version.manifest_path.write_text(json.dumps({"name": "toy"}))
    with pytest.raises(RepositoryError, match="manifest.json: invalid manifest"):
        Repository(version.path.parent.parent).open("toy")
    version.manifest_path.write_text("{not json")
    with pytest.raises(RepositoryError, match="not valid JSON"):
        Repository(version.path.parent.parent).open("toy")


def test_manifest_folder_mismatch_is_refused(version):
    data = json.loads(version.manifest_path.read_text())
    data["version"] = 5
    version.manifest_path.write_text(json.dumps(data))
    with pytest.raises(RepositoryError, match="folder is toy/1"):
        Repository(version.path.parent.parent).open("toy", 1)


def test_concurrent_editors_do_not_lose_variants(version, tmp_path):
    # Two handles on the same version (as two processes would have): each edit re-reads under the lock.
    other = Repository(version.path.parent.parent).open("toy")
    version.add_variant("fp32", _file(tmp_path, "a.onnx", b"a"), precision="fp32", backend="onnxruntime")
    other.add_variant("fp16", _file(tmp_path, "b.onnx", b"b"), precision="fp16", backend="onnxruntime")
    assert sorted(v.name for v in load_manifest(version.manifest_path).variants) == ["fp16", "fp32"]
