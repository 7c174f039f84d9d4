"""``pointserve loadgen`` sweeps against a real server on 127.0.0.1: steps, table, CSV / JSON / PNG, cloud
sources, bounds, error counting and the loopback guard."""

from __future__ import annotations

import argparse
import csv
import json
import struct
from pathlib import Path

import pytest

from pointserve.bench.loadgen_cli import add_arguments, main_from_args
from pointserve.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--duration", "0.4", "--warmup", "0.1", "--points", "64", "--clouds", "8"]


def _loadgen(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pointserve loadgen")
    add_arguments(parser)
    return main_from_args(parser.parse_args(argv))


def test_concurrency_sweep_writes_table_csv_json_and_png(bench_server, tmp_path, capsys):
    out = {name: tmp_path / f"sweep.{name}" for name in ("csv", "json", "png")}
    code = _loadgen(
        ["--url", bench_server, "--model", "tiny-shapes", "--concurrency", "1,2,4", "--payload", "binary,v2-json"]
        + QUICK
        + ["--csv", str(out["csv"]), "--json", str(out["json"]), "--plot", str(out["png"])]
    )
    stdout = capsys.readouterr().out
    assert code == 0
    table = [line for line in stdout.splitlines() if line.startswith("| ")]
    assert table[0].split("|")[1].strip() == "payload" and len(table) == 1 + 6
    assert [line.split("|")[2].strip() for line in table[1:]] == ["c=1", "c=2", "c=4"] * 2
    rows = list(csv.DictReader(out["csv"].open()))
    assert [(r["payload"], float(r["load"])) for r in rows] == [
        (p, c) for p in ("binary", "v2-json") for c in (1.0, 2.0, 4.0)
    ]
    for row in rows:
        assert int(row["ok"]) > 0 and int(row["errors"]) == 0 and float(row["throughput_rps"]) > 0
        assert float(row["p50_ms"]) <= float(row["p90_ms"]) <= float(row["p95_ms"]) <= float(row["p99_ms"])
    report = json.loads(out["json"].read_text())
    assert report["variant"] == "fp32" and len(report["steps"]) == 6
    assert report["clouds"] == {"count": 8, "points": [64], "source": "random ellipsoids"}
    png = out["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24])[0] > 300


def test_fixed_request_rate_is_open_loop_and_bounded(bench_server, tmp_path, capsys):
    report = tmp_path / "rate.json"
    code = _loadgen(
        ["--url", bench_server, "--model", "tiny-shapes", "--request-rate", "40", "--requests", "10"]
        + QUICK
        + ["--json", str(report)]
    )
    assert code == 0
    (step,) = json.loads(report.read_text())["steps"]
    assert step["mode"] == "rate" and step["load"] == 40.0
    assert step["ok"] == 10 and step["errors"] == 0  # --requests bounds the measured requests
    assert "40/s" in capsys.readouterr().out


def test_clouds_from_a_dataset_and_from_a_folder(bench_server, tmp_path):
    report = tmp_path / "d.json"
    argv = ["--url", bench_server, "--model", "tiny-shapes", "--concurrency", "2", *QUICK, "--json", str(report)]
    assert _loadgen([*argv, "--dataset", "shapes"]) == 0
    assert json.loads(report.read_text())["clouds"] == {"count": 8, "points": [64], "source": "dataset shapes/test"}
    assert _loadgen([*argv, "--cloud-dir", str(ROOT / "examples" / "clouds")]) == 0
    clouds = json.loads(report.read_text())["clouds"]
    assert clouds["count"] == 4 and clouds["points"] == [1024]  # mug and chair, .ply and .npy


def test_time_budget_skips_the_steps_that_do_not_fit(bench_server, tmp_path):
    report = tmp_path / "b.json"
    argv = ["--url", bench_server, "--model", "tiny-shapes", "--concurrency", "1,2,4,8", "--max-total-time", "1.2"]
    assert _loadgen([*argv, *QUICK, "--json", str(report)]) == 0
    assert 1 <= len(json.loads(report.read_text())["steps"]) <= 2  # 0.5 s per step, 1.2 s budget


def test_rejected_requests_are_counted_as_errors(bench_server, tmp_path, capsys):
    report = tmp_path / "e.json"
    argv = ["--url", bench_server, "--model", "tiny-shapes", "--concurrency", "2", "--payload", "json"]
    code = _loadgen([*argv, *QUICK, "--channels", "4", "--json", str(report)])  # the model takes 3
    assert code == 1
    (step,) = json.loads(report.read_text())["steps"]
    assert step["ok"] == 0 and step["errors_by_kind"] == {"http_400": step["requests"]} and step["requests"] > 0
    assert "requests failed" in capsys.readouterr().err


def test_only_loopback_unless_allowed(bench_server):
    with pytest.raises(ConfigError, match="not a loopback address"):
        _loadgen(["--url", "http://192.0.2.7:8000", "--model", "tiny-shapes", *QUICK])
    with pytest.raises(ConfigError, match="not served"):
        _loadgen(["--url", bench_server, "--model", "nope", *QUICK])
    with pytest.raises(SystemExit):
        _loadgen(["--url", bench_server, "--model", "tiny-shapes", "--payload", "xml"])
