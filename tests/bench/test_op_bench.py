"""``pointserve bench-op pcn-conv`` end to end on a small problem (the real CLI, worker, torch and onnxruntime),
and its problem builder, FLOP count and verification check on their own."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest

from pointserve.bench import op_bench
from pointserve.cli import main

BATCH, POINTS, ITERATIONS = 2, 256, 3
SMALL = ["--batch", str(BATCH), "--points", str(POINTS), "--iterations", str(ITERATIONS), "--warmup", "1"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> tuple[int, str, dict]:
    """One real run (every implementation and order, one thread): exit code, printed output, JSON report."""
    path = tmp_path_factory.mktemp("bench-op") / "out.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["bench-op", "pcn-conv", *SMALL, "--threads", "1", "--json", str(path)])
    return code, printed.getvalue(), json.loads(path.read_text(encoding="utf-8"))


def test_every_form_and_order_is_timed(small_run):
    code, _, report = small_run
    assert code == 0
    assert [(r["implementation"], r["order"]) for r in report["rows"]] == [
        (i, o) for i in op_bench.IMPLEMENTATIONS for o in op_bench.ORDERS
    ]
    for row in report["rows"]:
        assert len(row["forward_times_ms"]) == ITERATIONS and min(row["forward_times_ms"]) > 0
        assert row["forward_ms"] > 0 and row["forward_gflops"] > 0 and row["forward_mb_moved"] > 0
        if row["backend"] == "torch":
            assert len(row["backward_times_ms"]) == ITERATIONS and min(row["backward_times_ms"]) > 0
            assert row["backward_ms"] > 0 and row["backward_gflops"] > 0 and row["backward_peak_mb"] >= 0
            # the sparse forms derive their structure once per neighbourhood, timed apart; gather needs none
            assert (row["prepare_ms"] > 0) == (row["implementation"] != "gather")
        else:
            assert row["implementation"] == "onnxruntime" and row["backward_ms"] is None


def test_peak_memory_sees_the_gathered_tensor_and_not_the_parent(small_run):
    _, _, report = small_run
    p = report["problem"]
    gathered_mb = p["n_out"] * p["max_degree"] * p["terms"] * p["features"] * 4 / 2**20  # gather, transform first
    row = next(r for r in report["rows"] if r["implementation"] == "gather" and r["order"] == "transform_first")
    # At least the (N_out, K*T, F_out) tensor it materialises; far below this pytest process's own resident set.
    assert gathered_mb * 0.9 <= row["forward_peak_mb"] < 100
    assert row["backward_peak_mb"] >= gathered_mb * 0.9


def test_outputs_were_checked_equal_before_timing(small_run):
    _, _, report = small_run
    verification = report["verification"]
    assert verification["passed"] is True and verification["tolerance"] == 1e-4
    assert set(verification["max_abs_diff"]) == {f"{r['implementation']} {r['order']}" for r in report["rows"]}
    assert all(0 <= diff <= 1e-4 for diff in verification["max_abs_diff"].values())
    assert set(report["method"]["exporters"].values()) <= {"dynamo", "torchscript"}


def test_reference_row_is_labelled_as_reference_not_measured(small_run):
    _, printed, report = small_run
    reference = report["reference"]
    assert reference["measured"] is False
    assert reference["label"].startswith("reference: pcn README, GTX-1080Ti, N(FΘ)-JIT")
    assert "(not measured here)" in reference["label"]
    assert (reference["forward_ms"], reference["backward_ms"]) == (2.68, 4.09)
    assert reference["label"] in printed and "not measured here" in printed
    assert all(r["implementation"] in op_bench.IMPLEMENTATIONS for r in report["rows"])  # not among the rows


def test_problem_machine_and_goal_are_recorded(small_run):
    _, printed, report = small_run
    p = report["problem"]
    assert (p["n_in"], p["n_out"], p["features"], p["terms"]) == (BATCH * POINTS, BATCH * POINTS, 64, 4)
    assert p["edges"] + p["duplicates_removed"] == p["edges_drawn"] == 9 * BATCH * POINTS
    assert report["settings"]["threads"] == 1 and report["settings"]["warmup"] == 1
    assert {"torch", "onnxruntime", "logical_cpus"} <= set(report["machine"])
    goal = report["goal"]
    assert goal["row"] in {f"{r['implementation']} {r['order']}" for r in report["rows"] if r["backend"] == "torch"}
    assert goal["met"] == all(goal["checks"].values())
    assert op_bench.GOAL_LINE in printed and "(measured with --threads 1, not 2)" in printed


def test_problem_is_block_diagonal_deduplicated_and_padded():
    sizes, arrays = op_bench.build_problem(batch=3, points=50, edges_per_point=9, features=8, terms=4, seed=1)
    neighbors, edge_features = arrays["neighbors"], arrays["edge_features"]
    n = 150
    assert neighbors.shape == (n, sizes.max_degree) and edge_features.shape == (n, sizes.max_degree, 4)
    real = neighbors < n
    rows = np.nonzero(real)[0]
    assert real.sum() == sizes.edges and sizes.edges + (9 * n - sizes.edges) == 9 * n
    assert np.array_equal(rows // 50, neighbors[real] // 50)  # edges never cross clouds
    assert len(set(zip(rows.tolist(), neighbors[real].tolist(), strict=True))) == sizes.edges  # no duplicate edge
    assert np.all(neighbors[~real] == n) and np.all(edge_features[~real] == 0)
    assert np.all(np.diff(real.astype(int), axis=1) <= 0)  # real slots first, padding after
    assert real.sum(axis=1).max() == sizes.max_degree
    again = op_bench.build_problem(batch=3, points=50, edges_per_point=9, features=8, terms=4, seed=1)[1]
    assert all(np.array_equal(arrays[k], again[k]) for k in arrays)


def test_flops_follow_the_stated_formula():
    sizes = op_bench.Sizes(
        batch=1, points=10, n=10, edges_drawn=30, edges=28, max_degree=5, empty_rows=0, features=6, terms=4
    )
    dense, sparse = 10 * 6 * 4 * 6 * 2, 28 * 4 * 6 * 2
    for order in op_bench.ORDERS:
        assert op_bench.flops(sizes, order) == dense + sparse
        assert op_bench.flops(sizes, order, backward=True) == 2 * dense + sparse


@pytest.mark.parametrize("diff", [1e-3, math.nan])
def test_a_mismatch_fails_loudly(diff):
    verification = {"reference": "torch gather transform_first", "tolerance": 1e-4, "passed": True}
    verification["max_abs_diff"] = {"gather transform_first": 0.0, "csr features_first": diff}
    with pytest.raises(RuntimeError, match="csr features_first"):
        op_bench.require_verified(verification)
    op_bench.require_verified(verification | {"max_abs_diff": {"gather transform_first": 0.0}})


def test_an_unknown_implementation_is_a_user_error(capsys):
    assert main(["bench-op", "pcn-conv", "--implementations", "gather,nope"]) == 2
    assert "--implementations takes a comma list" in capsys.readouterr().err
