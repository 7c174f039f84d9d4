"""Fixtures for the image-environment tests: a tiny real repository (``image_repository.py``: the suite's
random-weight PointNet classifier and segmenter from ``tests/tiny_models.py``, exported through pointserve.export,
registered through pointserve.repository) and a helper that runs ``pointserve serve`` as a subprocess on a free
loopback port until it is ready."""

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
from image_repository import build_repository

from pointserve.bench.processes import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def image_repository(tmp_path_factory) -> Path:
    return build_repository(tmp_path_factory.mktemp("image-repo"))


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
