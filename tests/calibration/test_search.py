"""The accuracy-guarded int8 search (``calibrate --target-agreement``) on a trained classifier and a part segmenter:
its record is what its graphs do on the held-out clouds, it keeps as few nodes in float as reach the target, and the
graph it stores is the same TensorRT-ready Q/DQ form as plain int8."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest

from pointserve.calibration.qdq import WEIGHT_OPS, check_qdq_graph
from pointserve.calibration.search import compute_nodes, search_int8, split_sizes
from pointserve.cli import main
from pointserve.errors import CalibrationError
from pointserve.repository import Repository


@pytest.fixture()
def fresh_classifier(classifier_version, tmp_path):
    """A copy of the session's exported classifier, so the variants written here stay here."""
    root = tmp_path / "repository"
    shutil.copytree(classifier_version.path.parent.parent, root)
    return Repository(root).open(classifier_version.name)


def _independent_agreement(version, search, num_points_card):
    """Re-run the stored int8 graph and fp32 on the held-out clouds with plain onnxruntime sessions."""
    import onnxruntime as ort

    from pointserve.calibration.dataset import CalibrationSet

    calibration = CalibrationSet.load(version.path / version.variant("int8").calibration.file)
    points = calibration.arrays()["points"][search.calibration_samples :]
    answers = []
    for variant in ("fp32", "int8"):
        session = ort.InferenceSession(str(version.variant_path(variant)), providers=["CPUExecutionProvider"])
        answers.append(
            np.concatenate([session.run(None, {"points": points[i : i + 16]})[0] for i in range(0, len(points), 16)])
        )
    return float((answers[0].argmax(-1) == answers[1].argmax(-1)).mean())


def test_split_sizes_hold_out_a_fraction_and_leave_both_parts_non_empty():
    assert split_sizes(512, 0.5) == (256, 256)
    assert split_sizes(10, 0.25) == (8, 2)
    assert split_sizes(2, 0.9) == (1, 1)
    with pytest.raises(CalibrationError, match="at least 2"):
        split_sizes(1, 0.5)
    with pytest.raises(CalibrationError, match="between 0 and 1"):
        split_sizes(100, 1.0)


def test_a_reachable_target_keeps_everything_int8_and_records_each_method(fresh_classifier, capsys):
    code = main(
        ["calibrate", "shapes4-cls", "--repository", str(fresh_classifier.path.parent.parent), "--num-samples", "96",
         "--target-agreement", "0.5"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    version = Repository(fresh_classifier.path.parent.parent).open("shapes4-cls")
    search = version.variant("int8").calibration.search
    assert search is not None and search.reached_target
    assert (search.calibration_samples, search.heldout_samples) == (48, 48)
    assert search.float_nodes == []  # all-int8 already agrees on half the held-out clouds
    assert sorted(t.method for t in search.trials) == ["entropy", "minmax", "percentile"]
    assert {t.label for t in search.trials} == {"all int8"}  # a classifier's family rule keeps nothing in float
    assert search.heldout_agreement == max(t.agreement for t in search.trials)
    assert search.heldout_agreement == pytest.approx(_independent_agreement(version, search, 64), abs=1e-6)
    assert "target agreement 0.5 reached" in out and "every quantisable node is int8" in out
    check_qdq_graph(version.variant_path("int8"))


def test_an_exacting_target_moves_the_most_sensitive_nodes_to_float_one_at_a_time(fresh_classifier, capsys):
    code = main(
        ["calibrate", "shapes4-cls", "--repository", str(fresh_classifier.path.parent.parent), "--num-samples", "96",
         "--target-agreement", "1.0", "--search-methods", "minmax"]
    )  # fmt: skip
    out = capsys.readouterr().out
    version = Repository(fresh_classifier.path.parent.parent).open("shapes4-cls")
    search = version.variant("int8").calibration.search
    fp32_graph = onnx.load(str(version.variant_path("fp32")))
    candidates = compute_nodes(fp32_graph.graph)
    assert candidates and all(n.op_type in WEIGHT_OPS for n in search.float_nodes)
    assert {n.name for n in search.float_nodes} <= set(candidates)
    assert code == (0 if search.reached_target else 1), out
    assert search.reached_target == (search.heldout_agreement >= 1.0)
    start = search.trials[0]
    if start.agreement < 1.0:
        # one trial per candidate alone in float, then the greedy steps; ranks recorded in order
        alone = [t for t in search.trials if t.label.endswith(" alone")]
        assert len(alone) == len(candidates)
        ranks = [int(n.reason.split("rank ")[1].split(":")[0]) for n in search.float_nodes]
        assert ranks == list(range(1, len(ranks) + 1))
        if not search.reached_target:
            assert len(search.float_nodes) == len(candidates)  # it gave up only with everything in float
        else:
            # minimal along its ranking: one node fewer did not reach the target
            steps = [t for t in search.trials if t.label.startswith("greedy") or t.label.endswith(" alone")]
            assert len(search.float_nodes) == 1 or any(t.agreement < 1.0 for t in steps)
    assert search.heldout_agreement == pytest.approx(_independent_agreement(version, search, 64), abs=1e-6)
    summary = check_qdq_graph(version.variant_path("int8"))
    assert summary.quantize_nodes > 0  # still an int8 graph
    assert "kept in float" in out or "every quantisable node is int8" in out


def test_the_part_segmenter_starts_from_its_family_rule(part_segmenter, tmp_path):
    card, fp32, calibration = part_segmenter
    _, search = search_int8(fp32, calibration.path, tmp_path / "int8.onnx", card, target_agreement=0.5,
                            methods=("minmax",), cache_dir=tmp_path)  # fmt: skip
    labels = [t.label for t in search.trials]
    assert labels == ["all int8", "family rule"]
    if search.float_nodes:  # the family rule won: its nodes say so
        assert all("family's rule" in n.reason for n in search.float_nodes)
    check_qdq_graph(tmp_path / "int8.onnx")


def test_bad_targets_and_methods_are_refused(part_segmenter, tmp_path):
    card, fp32, calibration = part_segmenter
    with pytest.raises(CalibrationError, match="target agreement"):
        search_int8(fp32, calibration.path, tmp_path / "x.onnx", card, target_agreement=1.5)
    with pytest.raises(CalibrationError, match="methods"):
        search_int8(fp32, calibration.path, tmp_path / "x.onnx", card, target_agreement=0.9, methods=("kl",))
