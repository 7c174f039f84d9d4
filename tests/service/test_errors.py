"""The status mapping: PointServeError subclasses, FastAPI validation errors and HTTP errors all answer JSON."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from server_helpers import running_server

from pointserve.errors import (
    DataError,
    EngineError,
    InputError,
    ModelNotFoundError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServiceUnavailableError,
    UnsupportedMediaTypeError,
)
from pointserve.service.errors import install_error_handlers, status_for


@pytest.mark.parametrize(
    "error, status",
    [
        (InputError("x"), 400),
        (DataError("x"), 400),
        (PayloadTooLargeError("x"), 413),
        (UnsupportedMediaTypeError("x"), 415),
        (ModelNotFoundError("x"), 404),
        (ServiceUnavailableError("x"), 503),
        (RequestTimeoutError("x"), 504),
        (EngineError("x"), 500),
        (ValueError("x"), 500),
    ],
)
def test_status_for(error, status):
    assert status_for(error) == status


def test_handlers_answer_json_errors_over_http():
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/count")
    async def count(n: int) -> dict:
        return {"n": n}

    @app.get("/busy")
    async def busy() -> dict:
        raise ServiceUnavailableError("queue full")

    with running_server(app) as url, httpx.Client(base_url=url) as client:
        invalid = client.get("/count", params={"n": "many"})
        assert invalid.status_code == 422
        body = invalid.json()
        assert body["error"].startswith("query.n:") and body["detail"][0]["loc"] == ["query", "n"]
        missing = client.get("/count")
        assert missing.status_code == 422 and "query.n" in missing.json()["error"]
        busy = client.get("/busy")
        assert busy.status_code == 503 and busy.json() == {"error": "queue full"}
        assert busy.headers["retry-after"] == "1"
        not_found = client.get("/nowhere")
        assert not_found.status_code == 404 and not_found.json() == {"error": "Not Found"}


def test_openapi_declares_the_bearer_scheme_on_guarded_operations(client):
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["paths"]["/v1/models/{model}/predict"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in schema["paths"]["/v2/health/ready"]["get"]
    names = {p["name"] for p in schema["paths"]["/v1/models/{model}/predict"]["post"]["parameters"]}
    assert {"model", "top_k", "return_probabilities", "return_logits", "category"} <= names
