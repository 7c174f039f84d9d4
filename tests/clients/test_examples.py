"""The client examples run as scripts against the test server and print what they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "clients" / "examples"
SAMPLES = ROOT / "examples" / "clouds"


def _run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_sample_clouds_are_shipped():
    for name in ("mug", "chair"):
        for suffix in (".ply", ".npy", ".json"):
            path = SAMPLES / f"{name}{suffix}"
            assert path.is_file() and 0 < path.stat().st_size < 64_000


def test_classify_example(server_url, models):
    out = _run("classify.py", "--url", server_url, "--model", models["classifier"], "--top-k", "2")
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all("top-2:" in line for line in lines)
    assert {Path(line.split(":")[0]).stem for line in lines} == {"mug", "chair"}


def test_segment_example(server_url, models):
    out = _run("segment.py", "--url", server_url, "--model", models["segmenter"], "--category", "mug")
    assert "1024 points, category mug" in out and "first points:" in out


def test_async_example(server_url, models):
    out = _run("async_many.py", "--url", server_url, "--model", models["classifier"], "--requests", "12")
    assert out.startswith("12 requests in ")


def test_oip_v2_example(server_url, models):
    out = _run("oip_v2.py", "--url", server_url, "--model", models["classifier"])
    assert "logits (2, 4), binary vs JSON max |diff| = 0" in out


def test_sample_clouds_script_regenerates_the_shipped_files(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_sample_clouds.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for shipped in sorted(p for p in SAMPLES.iterdir() if p.suffix in (".ply", ".npy", ".json")):
        assert (tmp_path / shipped.name).read_bytes() == shipped.read_bytes(), shipped.name
