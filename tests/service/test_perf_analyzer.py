"""Stock Triton ``perf_analyzer`` against the real server on loopback, as a Triton user would run it.

The server runs with the service's own uvicorn config (``server.uvicorn_config``: uvloop, the connection limits),
as ``pointserve serve`` does.

The binary comes from ``scripts/install-perf-analyzer.sh`` (``scripts/test.sh`` runs it, so CI has it); without it
the test skips and says how to get it. ``--input-data zero``: perf_analyzer's default random data holds NaN and
infinities, which the server refuses (rightly) as coordinates.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from repo_builder import CLASSIFIER
from server_helpers import running_server, session_settings

from pointserve.service.app import create_app
from pointserve.service.server import uvicorn_config

INSTALLED = Path(__file__).resolve().parents[2] / ".tools" / "perf_analyzer" / "perf_analyzer"
TIMEOUT_S = 240
# perf_analyzer's summary line per concurrency level.
THROUGHPUT = re.compile(r"Concurrency: (\d+), throughput: ([\d.]+) infer/sec, latency (\d+) usec")


def perf_analyzer_command() -> str | None:
    """``$PERF_ANALYZER``, else the one the install script put in .tools/, else one on PATH."""
    for candidate in (os.environ.get("PERF_ANALYZER"), str(INSTALLED), shutil.which("perf_analyzer")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def test_perf_analyzer_runs_against_pointserve(repository):
    command = perf_analyzer_command()
    if command is None:
        pytest.skip("perf_analyzer is not installed: run `bash scripts/install-perf-analyzer.sh` (test.sh does)")
    settings = session_settings(repository)
    app = create_app(settings)
    with running_server(app, config=uvicorn_config(app, settings)) as server:
        output = run_perf_analyzer(command, server.removeprefix("http://"))
    levels = {int(c): float(t) for c, t, _ in THROUGHPUT.findall(output)}
    assert sorted(levels) == [1, 2, 3, 4], output
    assert all(throughput > 0 for throughput in levels.values()), output
    # The server-side breakdown appears only when GET /v2 lists the statistics extension and the stats parse.
    assert "Server:" in output and "Inference count:" in output, output
    print(output)  # the measured figures (pytest -s shows them)


def run_perf_analyzer(command: str, address: str) -> str:
    """The stock command line a Triton user runs (a 1 s window per measurement), bounded by ``TIMEOUT_S``."""
    args = [command, "-m", CLASSIFIER, "-u", address, "-i", "http", "--shape", "points:1024,3"]
    args += ["--input-data", "zero", "--concurrency-range", "1:4", "--measurement-interval", "1000"]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"perf_analyzer ran past {TIMEOUT_S} s:\n{exc.stdout or ''}{exc.stderr or ''}")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output
