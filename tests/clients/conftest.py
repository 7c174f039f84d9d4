"""Client tests run against a real uvicorn server on 127.0.0.1, built with the service tests' own helpers:
their tiny real repository (random-weight PointNets exported to ONNX: a classifier and a part segmenter)
and their in-thread uvicorn runner."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "clients"))

from repo_builder import CLASSIFIER, PART_SEGMENTER, build_repository  # noqa: E402
from server_helpers import running_server, session_settings  # noqa: E402


@pytest.fixture(scope="session")
def client_repository(tmp_path_factory) -> Path:
    return build_repository(tmp_path_factory.mktemp("client-repo"))


@pytest.fixture(scope="session")
def server_url(client_repository) -> Iterator[str]:
    from pointserve.service.app import create_app

    with running_server(create_app(session_settings(client_repository))) as url:
        yield url


@pytest.fixture(scope="session")
def models() -> dict[str, str]:
    return {"classifier": CLASSIFIER, "segmenter": PART_SEGMENTER}


@pytest.fixture(scope="session")
def cloud() -> np.ndarray:
    """120 points of raw (not normalised) coordinates."""
    rng = np.random.default_rng(3)
    return (rng.standard_normal((120, 3)) * [2.0, 1.0, 0.5] + [5.0, 0.0, -1.0]).astype(np.float32)
