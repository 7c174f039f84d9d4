"""Optional bearer auth: off by default; with an api_key every route but health (and the docs) needs it."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from repo_builder import CLASSIFIER
from server_helpers import running_server, session_settings

from pointserve.service.app import create_app

KEY = "test-key-123"


@pytest.fixture(scope="module")
def secured(repository):
    app = create_app(session_settings(repository, api_key=KEY, models={}))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def test_health_and_docs_stay_open(secured):
    assert secured.get("/v2/health/live").status_code == 200
    assert secured.get("/v2/health/ready").status_code == 200
    assert secured.get("/openapi.json").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models",
        f"/v1/models/{CLASSIFIER}",
        "/v2",
        f"/v2/models/{CLASSIFIER}",
        f"/v2/models/{CLASSIFIER}/config",
        f"/v2/models/{CLASSIFIER}/stats",
        "/v2/models/stats",
        "/metrics",
    ],
)
def test_everything_else_needs_the_key(secured, path):
    missing = secured.get(path)
    assert missing.status_code == 401 and "API key" in missing.json()["error"]
    assert missing.headers["www-authenticate"] == "Bearer"
    assert secured.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert secured.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_repository_index_needs_the_key(secured):
    assert secured.post("/v2/repository/index").status_code == 401
    index = secured.post("/v2/repository/index", headers={"Authorization": f"Bearer {KEY}"})
    assert index.status_code == 200 and CLASSIFIER in {entry["name"] for entry in index.json()}


def test_predict_with_the_key(secured):
    points = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    path = f"/v1/models/{CLASSIFIER}/predict"
    headers = {"content-type": "application/octet-stream"}
    assert secured.post(path, content=points.tobytes(), headers=headers).status_code == 401
    answer = secured.post(path, content=points.tobytes(), headers={**headers, "Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 200 and "class_id" in answer.json()


def test_auth_is_off_by_default(client):
    assert client.get("/v1/models").status_code == 200
