"""Fixtures for the image-environment tests: a tiny real repository (the suite's random-weight PointNet
classifier from ``tests/tiny_models.py``, exported through pointserve.export, registered through
pointserve.repository) and a helper that runs ``pointserve serve`` as a subprocess on a free loopback port
until it is ready."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from tiny_models import random_checkpoint, tiny_card

from pointserve.bench.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tiny-cls"
SEGMENTER = "tiny-seg"


@pytest.fixture(scope="session")
def image_repository(tmp_path_factory) -> Path:
    from pointserve.checkpoint import load_checkpoint
    from pointserve.export import export_model
    from pointserve.repository import Repository

    root = tmp_path_factory.mktemp("image-repo")
    repository = Repository(root / "repository")
    # A classifier and a segmenter: segmentation answers for resampled clouds need scipy's k-d tree.
    for name, architecture in ((MODEL, "pointnet_cls"), (SEGMENTER, "pointnet_seg")):
        model, card = load_checkpoint(random_checkpoint(root / f"checkpoint-{name}", tiny_card(architecture), seed=0))
        onnx_path = root / f"{name}.onnx"
        report = export_model(model, card, onnx_path, parity_shapes=[(1, card.num_points)], simplify_graph=False)
        version = repository.create_version(
            name, card=card, inputs=report.inputs, outputs=report.outputs, export_report=report.model_dump()
        )
        version.add_variant("fp32", onnx_path, precision="fp32", backend="onnxruntime")
    return repository.root


@contextmanager
def serve_subprocess(command: list[str], env: dict[str, str], port: int, timeout_s: float = 90.0) -> Iterator[str]:
    """Start ``command`` (a ``pointserve serve``), wait for ``/v2/health/ready``, yield the base URL, then
    SIGTERM it (graceful drain) and wait for it to exit."""
    log = open(env.get("POINTSERVE_TEST_LOG", os.devnull), "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{' '.join(command)} exited with {process.returncode} before it was ready")
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready within {timeout_s} s")
            time.sleep(0.2)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        log.close()


@pytest.fixture
def serve():
    """``serve(command, env, port)``: the :func:`serve_subprocess` context manager."""
    return serve_subprocess


@pytest.fixture
def port() -> int:
    return free_port()
