"""``pointserve bench-op sbnet`` end to end on a small problem (the real CLI, torch and onnxruntime): SBNet's CSV
columns, every block size and sparsity a row, the PNG, the verification; and its flag checks."""

from __future__ import annotations

import contextlib
import csv
import io
import json

import numpy as np
import pytest

from pointserve.bench import sbnet_bench
from pointserve.cli import main

SMALL = ["--size", "30x44", "--channels", "8", "--bottleneck", "4", "--blocks", "5,9", "--sparsities", "0.6,0.9"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sbnet-bench")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["bench-op", "sbnet", *SMALL, "--rounds", "2", "--warmup", "1", "--threads", "1", "-o", str(out)])
    return code, printed.getvalue(), out


def test_csv_has_sbnet_columns_and_a_row_per_case(small_run):
    code, printed, out = small_run
    assert code == 0
    with (out / "sbnet.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == sbnet_bench.CSV_COLUMNS
    assert {(r["test"], r["BH"], r["sparsity"]) for r in rows} == {
        (t, b, s) for t in ("conv", "res") for b in ("5", "9") for s in ("0.6", "0.9")
    }
    for row in rows:
        assert (row["H"], row["W"]) == ("30", "44")
        assert float(row["dense_time"]) > 0 and float(row["sparse_time"]) > 0
        assert float(row["speedup"]) == pytest.approx(float(row["dense_time"]) / float(row["sparse_time"]), rel=1e-2)
        assert row["dense_form"] in sbnet_bench.DENSE_FORMS
    assert "best block per sparsity" in printed


def test_report_and_chart(small_run):
    _, _, out = small_run
    report = json.loads((out / "sbnet.json").read_text())
    for test in ("conv", "res"):
        summary = report["tests"][test]
        assert set(summary["dense"]) == set(sbnet_bench.DENSE_FORMS)
        assert summary["verification_max_error"] <= sbnet_bench.VERIFY_TOLERANCE
    assert len(report["best"]) == 4  # (test, sparsity) pairs
    assert report["goal"] == []  # the goal is stated for 200x350 only
    assert (out / "sbnet-speedup.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_top_left_mask_covers_one_minus_sparsity():
    mask = sbnet_bench.top_left_mask(200, 350, 0.9)
    assert abs(1 - mask.mean() - 0.9) < 0.01
    assert mask[0, 0, 0] == 1 and mask[0, -1, -1] == 0
    assert np.array_equal(mask[0, :, 0] > 0, np.arange(200) < round(200 * 0.1**0.5))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--tests", "conv,pool"], "--tests"),
        (["--blocks", "2"], "--blocks"),
        (["--sparsities", "0.5,1.0"], "--sparsities"),
        (["--size", "wide"], "--size"),
        (["--dense-forms", "tensorrt"], "--dense-forms"),
    ],
)
def test_bad_flags_are_clear_errors(flags, message, capsys, tmp_path):
    assert main(["bench-op", "sbnet", *flags, "-o", str(tmp_path)]) != 0
    assert message in capsys.readouterr().err


def test_lidar_masks_are_dilated_occupancy_of_real_scans():
    masks = sbnet_bench.lidar_masks(100, 175, scans=2)
    assert [label for label, _, _ in masks] == ["lidar-0", "lidar-1"]
    for _, sparsity, mask in masks:
        assert mask.shape == (1, 100, 175)
        assert 0.3 < sparsity < 0.99 and sparsity == pytest.approx(1 - mask.mean(), abs=1e-4)


def test_the_network_sparse_against_its_dense_twin(tmp_path, capsys):
    from tiny_models import random_checkpoint, tiny_card

    checkpoint = random_checkpoint(tmp_path / "ckpt", tiny_card("bev_seg"), seed=1)
    args = ["--network", str(checkpoint), "--scans", "1", "--rounds", "2", "--threads", "1", "-o", str(tmp_path)]
    assert main(["bench-op", "sbnet", *args]) == 0
    report = json.loads((tmp_path / "sbnet-network.json").read_text())
    assert report["label_agreement"] == 1.0  # the same function: every point gets the same label
    assert report["points"] > 30_000 and 0 < report["tile_sparsity_median"] < 1
    for form in ("sparse", "dense"):
        assert report["forms"][form]["graph_ms_median"] > 0
    assert "labels identical on 100.000 %" in capsys.readouterr().out
