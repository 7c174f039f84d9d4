"""Service test fixtures: a tiny real repository (random-weight PointNets exported to ONNX) and a real uvicorn
server on 127.0.0.1 (a free port), both built once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from repo_builder import build_repository
from server_helpers import running_server, session_settings

from pointserve.service.app import create_app


@pytest.fixture(scope="session")
def repository(tmp_path_factory) -> Path:
    return build_repository(tmp_path_factory.mktemp("repository"))


@pytest.fixture(scope="session")
def server(repository) -> Iterator[str]:
    """Base URL of the session's server (every model of the tiny repository)."""
    app = create_app(session_settings(repository))
    with running_server(app) as url:
        yield url


@pytest.fixture(scope="session")
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as http:
        yield http


@pytest.fixture(scope="session")
def cloud() -> np.ndarray:
    """A 100-point cloud of raw coordinates (not normalised: the server does that)."""
    rng = np.random.default_rng(7)
    return (rng.standard_normal((100, 3)) * [3.0, 1.0, 0.5] + [10.0, -2.0, 4.0]).astype(np.float32)
