"""The CPU image's environment, built and served without a Docker engine.

The Dockerfile installs exactly ``docker/requirements-serve.txt`` into a fresh venv, then pointserve with
``pip install --no-deps .``. Two tests check that this environment serves:

* fast: ``pointserve serve`` runs in this venv with every module *outside* that requirement set made
  unimportable (an import guard derived from the requirements and their dependency closure, torch
  among the blocked), and answers a prediction;
* slow: the environment is really created (fresh venv, same requirements file, same install step),
  torch is absent from it, and ``pointserve serve`` from it answers predictions.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import httpx
import numpy as np
import pytest
from image_repository import MODEL, SEGMENTER  # the two models of conftest.image_repository
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "docker" / "requirements-serve.txt"
DOCKERFILE = ROOT / "Dockerfile"
HEAVY = ("torch", "onnx", "onnxscript", "onnxsim", "matplotlib", "tensorrt", "safetensors", "tritonclient")


def requirement_lines(path: Path = REQUIREMENTS) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in path.read_text().splitlines() if line.split("#", 1)[0].strip()]


def dependency_closure(lines: list[str]) -> set[str]:
    """Canonical names of the distributions these requirements install (as installed here, recursively,
    with extras and environment markers applied)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(line) for line in lines]
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            continue
        for text in dist.requires or []:
            child = Requirement(text)
            extras = requirement.extras or {""}
            if child.marker is None or any(child.marker.evaluate({"extra": extra}) for extra in extras):
                todo.append(child)
    return {name for name, _ in seen}


def modules_outside(lines: list[str]) -> set[str]:
    """Top-level modules installed here that the requirement set would not install."""
    allowed = dependency_closure(lines) | {"pointserve"}
    distributions = metadata.packages_distributions()
    return {
        top
        for top, dists in distributions.items()
        if not any(canonicalize_name(d) in allowed for d in dists) and top != "pointserve"
    }


def test_dockerfile_installs_exactly_the_requirements_file():
    text = DOCKERFILE.read_text()
    assert "COPY docker/requirements-serve.txt /tmp/requirements-serve.txt" in text
    assert re.search(r"pip install --requirement /tmp/requirements-serve\.txt\n", text)
    assert "pip install --no-deps ." in text
    final_stage = text.split("AS runtime", 1)[1]
    assert "COPY --from=build /opt/pointserve /opt/pointserve" in final_stage
    assert "pip install" not in final_stage and "apt-get" not in final_stage  # nothing built in the final stage


def test_requirements_are_ranges_without_torch():
    lines = requirement_lines()
    names = {canonicalize_name(Requirement(line).name) for line in lines}
    assert not names & {canonicalize_name(h) for h in HEAVY}
    for line in lines:
        specifiers = {s.operator for s in Requirement(line).specifier}
        assert {">=", "<"} <= specifiers, f"{line!r}: give a lower bound and an upper bound"
    # torch must not arrive as anybody's dependency either.
    assert "torch" not in dependency_closure(lines)


def _class_names(repository: Path) -> list[str]:
    """The served model's classes, as its manifest records them."""
    from pointserve.repository import Repository

    return Repository(repository).open(MODEL).card.class_names


def _predict(url: str, seed: int = 0, *, model: str = MODEL, num_points: int = 50) -> dict:
    points = np.random.default_rng(seed).standard_normal((num_points, 3)).astype("<f4")
    response = httpx.post(
        f"{url}/v1/models/{model}/predict",
        content=points.tobytes(),
        headers={"content-type": "application/octet-stream"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


GUARD = textwrap.dedent(
    """
    import importlib.abc, os, sys

    BLOCKED = set(os.environ["POINTSERVE_TEST_BLOCKED"].split(","))

    class RequirementGuard(importlib.abc.MetaPathFinder):
        # What docker/requirements-serve.txt does not install cannot be imported here either.
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (not in requirements-serve.txt)", name=name)
            return None

    sys.meta_path.insert(0, RequirementGuard())
    from pointserve.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_service_runs_with_only_the_requirement_set_importable(image_repository, serve, port, tmp_path):
    blocked = modules_outside(requirement_lines())
    assert "torch" in blocked and "onnx" in blocked  # installed in the dev venv, not in the image
    launcher = tmp_path / "guarded_pointserve.py"
    launcher.write_text(GUARD)
    env = {
        **os.environ,
        "POINTSERVE_TEST_BLOCKED": ",".join(sorted(blocked)),
        "POINTSERVE_REPOSITORY": str(image_repository),
        "POINTSERVE_HOST": "127.0.0.1",
        "POINTSERVE_PORT": str(port),
        "POINTSERVE_TEST_LOG": str(tmp_path / "serve.log"),
    }
    try:
        with serve([sys.executable, str(launcher), "serve"], env, port) as url:
            answer = _predict(url)
            class_names = _class_names(image_repository)
            assert answer["label"] in class_names and len(answer["top_k"]) == len(class_names)
            # More points than the engine computes (2,048 by default for N = 128): resampled, and every input
            # point's label comes from its nearest processed neighbour (scipy's cKDTree, in the requirement set).
            segmented = _predict(url, 1, model=SEGMENTER, num_points=5000)
            assert segmented["resampled"] and segmented["num_points"] == 5000 and len(segmented["labels"]) == 5000
            assert segmented["num_processed_points"] < 5000
            assert httpx.get(f"{url}/metrics", timeout=10).status_code == 200
    except AssertionError:
        print((tmp_path / "serve.log").read_text()[-4000:])
        raise


@pytest.mark.slow
def test_fresh_image_environment_has_no_torch_and_serves(image_repository, serve, port, tmp_path):
    """What the Dockerfile's build stage does, step by step, then the final stage's CMD (~1 minute)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--no-cache-dir"]
    subprocess.run([*pip, "install", "--quiet", "--requirement", str(REQUIREMENTS)], check=True, timeout=600)
    source = tmp_path / "src"  # COPY pyproject.toml README.md ./ ; COPY pointserve ./pointserve
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "pointserve", source / "pointserve", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([*pip, "install", "--quiet", "--no-deps", "."], check=True, cwd=source, timeout=600)

    python = str(venv / "bin" / "python")
    probe = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr
    installed = subprocess.run([*pip, "list", "--format=freeze"], capture_output=True, text=True, check=True).stdout
    assert not re.search(r"^(torch|onnx|tensorrt)==", installed, re.M | re.I)

    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "POINTSERVE_REPOSITORY": str(image_repository),
        "POINTSERVE_HOST": "127.0.0.1",
        "POINTSERVE_PORT": str(port),
        "POINTSERVE_TEST_LOG": str(tmp_path / "serve.log"),
    }
    try:
        with serve([str(venv / "bin" / "pointserve"), "serve"], env, port) as url:
            first, second = _predict(url, 0), _predict(url, 1)
            class_names = _class_names(image_repository)
            assert first["label"] in class_names and second["label"] in class_names
            ready = httpx.get(f"{url}/v2/health/ready", timeout=10)
            assert ready.status_code == 200
    except AssertionError:
        print((tmp_path / "serve.log").read_text()[-4000:])
        raise
