"""``pointserve calibrate``: calibration set under the version's calibration/ folder + the int8 variant."""

from __future__ import annotations

import onnxruntime as ort

from pointserve.calibration import check_qdq_graph
from pointserve.cli import main
from pointserve.repository.store import sha256_file


def test_calibrate_command_adds_the_int8_variant_with_its_calibration_record(classifier_version, capsys):
    repository = str(classifier_version.path.parent.parent)
    args = ["calibrate", "shapes4-cls", "--repository", repository, "--num-samples", "24", "--seed", "5"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "scales computed" in first and "all zero points 0" in first

    classifier_version.reload()
    int8 = classifier_version.variant("int8")
    assert (int8.precision, int8.backend, int8.source) == ("int8", "onnxruntime", "fp32")
    calibration = int8.calibration
    assert (calibration.method, calibration.num_samples, calibration.seed) == ("minmax", 24, 5)
    assert calibration.file == "calibration/shapes-train-n24-s5.npz"
    assert calibration.data_hash == sha256_file(classifier_version.path / calibration.file)
    path = classifier_version.variant_path("int8")  # size + sha256 verified
    check_qdq_graph(path)
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    # Same data and method again: the set is reused as is and the scales come from the cache.
    assert main(args) == 0
    assert "scales reused from cache" in capsys.readouterr().out
    classifier_version.reload()
    assert classifier_version.variant("int8").calibration.data_hash == calibration.data_hash
    assert classifier_version.variant("int8").sha256 == int8.sha256


def test_calibrate_an_unknown_model_is_one_line(tmp_path, capsys):
    assert main(["calibrate", "nothing-here", "--repository", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "nothing-here" in err
