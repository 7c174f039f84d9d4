"""The CPU image built from ./Dockerfile and served from for real: runs ``scripts/image-test.sh`` (root, podman;
see docs/deployment.md, "The image test") and asserts on its report. Slow (minutes: podman build, and on a fresh
machine apt-get and debootstrap too), so it runs with ``-m slow``; CI runs it after the suite (.ci/run).

The script exits 77 when it cannot run here (not root, no podman and no apt-get to install it): the test then
skips with the script's reason, unless ``POINTSERVE_IMAGE_TEST_REQUIRED=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from image_repository import MODEL, SEGMENTER

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "image-test.sh"
SKIPPED = 77
SEGMENTED_POINTS = 5000  # image_checks.SEGMENTED_POINTS: more than 4,096


def _report(stdout: str) -> dict[str, str]:
    """The "image-test: KEY: VALUE" lines by key (the first word or words before the colon)."""
    report = {}
    for line in stdout.splitlines():
        if line.startswith("image-test: "):
            key, _, value = line.removeprefix("image-test: ").partition(": ")
            report.setdefault(key, value)
    return report


@pytest.mark.slow
def test_the_cpu_image_builds_and_serves_as_its_non_root_user():
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    output = result.stdout + result.stderr
    report = _report(result.stdout)
    if result.returncode == SKIPPED:
        reason = report.get("SKIPPED", output.strip()[-500:])
        if os.environ.get("POINTSERVE_IMAGE_TEST_REQUIRED") == "1":
            pytest.fail(f"scripts/image-test.sh skipped, and POINTSERVE_IMAGE_TEST_REQUIRED=1: {reason}")
        pytest.skip(f"scripts/image-test.sh: {reason}")
    print(result.stdout)  # the report, in the test's output (pytest -s, or -rP)
    assert result.returncode == 0, output[-6000:]

    assert re.fullmatch(r"[\d.]+ s \(podman build of \./Dockerfile, PYTHON_IMAGE=\S+\)", report["build"])
    size = re.match(r"(\d+) MB \(base (\d+) MB", report["image size"])
    assert size and 0 < int(size[2]) < int(size[1]) < 2000, report["image size"]
    assert report["image config"].startswith("USER 10001:10001,"), report["image config"]
    assert "EXPOSE 8000/tcp" in report["image config"]

    assert report["health"].startswith("live 200, ready 200")
    assert report["classify (v1)"].startswith(f"{MODEL}, 50 points -> label ")
    assert re.match(rf"{MODEL}, 1 x 128 points -> \S+ \[1, \d+\] FP32$", report["classify (v2 infer)"])
    segmented = report["segment (v1)"]
    assert segmented.startswith(f"{SEGMENTER}, {SEGMENTED_POINTS} points -> {SEGMENTED_POINTS} labels (resampled, ")
    assert report["metrics"] == "200"
    assert report["HEALTHCHECK"].startswith("the image's own command exits 0")

    assert re.match(r"server pid \d+ runs as uid 10001 gid 10001 \(real, effective, saved, fs\)", report["user"])
    assert report["filesystem"].startswith("read-only root")
    assert report["torch"].startswith("absent (import torch: ModuleNotFoundError")
    assert re.search(r"^image-test: PASSED in [\d.]+ s ", result.stdout, re.M)
