"""Open Inference Protocol v2, driven by the stock ``tritonclient.http`` client against the real server."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as triton_http
from repo_builder import CARDS, CLASSIFIER, PART_SEGMENTER
from tritonclient.utils import InferenceServerException

BINARY = {"content-type": "application/octet-stream"}


@pytest.fixture(scope="module")
def triton(server):
    client = triton_http.InferenceServerClient(url=server.removeprefix("http://"))
    yield client
    client.close()


def rest_logits(client, model: str, points: np.ndarray, category: str | None = None) -> np.ndarray:
    query = "?return_logits=true" + (f"&category={category}" if category is not None else "")
    response = client.post(f"/v1/models/{model}/predict{query}", content=points.tobytes(), headers=BINARY)
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["logits"], dtype=np.float32)


def test_live_ready_and_metadata(triton):
    assert triton.is_server_live()
    assert triton.is_server_ready()
    server = triton.get_server_metadata()
    assert server["name"] == "pointserve" and "binary_tensor_data" in server["extensions"]
    assert triton.is_model_ready(CLASSIFIER) and triton.is_model_ready(PART_SEGMENTER, "1")
    metadata = triton.get_model_metadata(PART_SEGMENTER)
    assert metadata["versions"] == ["1"] and metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [
        {"name": "points", "datatype": "FP32", "shape": [-1, -1, 3]},
        {"name": "category", "datatype": "INT64", "shape": [-1, 1]},  # Triton's form of a (B,) tensor: dims [1]
    ]
    assert metadata["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, -1, 6]}]
    assert triton.get_model_metadata(CLASSIFIER, model_version="1")["name"] == CLASSIFIER


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_classifier_infer_matches_the_rest_endpoint(triton, client, cloud, binary):
    batch = np.stack([cloud, cloud * 0.5 + 1.0, cloud[::-1].copy()])
    points = triton_http.InferInput("points", list(batch.shape), "FP32")
    points.set_data_from_numpy(batch, binary_data=binary)
    requested = triton_http.InferRequestedOutput("logits", binary_data=binary)
    result = triton.infer(CLASSIFIER, [points], outputs=[requested], request_id="req-1")
    logits = result.as_numpy("logits")
    assert logits.shape == (3, len(CARDS[CLASSIFIER].class_names)) and logits.dtype == np.float32
    assert result.get_response()["id"] == "req-1"
    expected = np.stack([rest_logits(client, CLASSIFIER, c) for c in batch])
    np.testing.assert_allclose(logits, expected, atol=1e-5)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_part_segmentation_infer_matches_the_rest_endpoint(triton, client, cloud, binary):
    batch = np.stack([cloud, cloud * 2.0])
    points = triton_http.InferInput("points", list(batch.shape), "FP32")
    points.set_data_from_numpy(batch, binary_data=binary)
    category = triton_http.InferInput("category", [2], "INT64")
    category.set_data_from_numpy(np.array([0, 1], dtype=np.int64), binary_data=binary)
    # No requested outputs: tritonclient asks for every output in binary (binary_data_output).
    result = triton.infer(PART_SEGMENTER, [points, category], model_version="1")
    logits = result.as_numpy("logits")
    assert logits.shape == (2, len(cloud), 6)
    np.testing.assert_allclose(logits[0], rest_logits(client, PART_SEGMENTER, batch[0], "mug"), atol=1e-5)
    np.testing.assert_allclose(logits[1], rest_logits(client, PART_SEGMENTER, batch[1], "lamp"), atol=1e-5)


def test_errors_reach_tritonclient_as_messages(triton, cloud):
    points = triton_http.InferInput("points", [1, *cloud.shape], "FP32")
    points.set_data_from_numpy(cloud[None])
    with pytest.raises(InferenceServerException, match="version '7' is not served"):
        triton.infer(CLASSIFIER, [points], model_version="7")
    with pytest.raises(InferenceServerException, match="no model 'nope'"):
        triton.get_model_metadata("nope")
    with pytest.raises(InferenceServerException, match="needs the object category"):
        triton.infer(PART_SEGMENTER, [points])
    wrong = triton_http.InferInput("points", [1, len(cloud), 2], "FP32")
    wrong.set_data_from_numpy(np.ascontiguousarray(cloud[None, :, :2]))
    with pytest.raises(InferenceServerException, match="3 coordinates"):
        triton.infer(CLASSIFIER, [wrong])
    assert not triton.is_model_ready("nope")


def test_raw_binary_request_and_error_bodies(client, cloud):
    header = (
        b'{"inputs":[{"name":"points","datatype":"FP32","shape":[1,%d,3],"parameters":{"binary_data_size":%d}}],'
        b'"outputs":[{"name":"logits","parameters":{"binary_data":true}}]}' % (len(cloud), cloud.nbytes)
    )
    response = client.post(
        f"/v2/models/{CLASSIFIER}/infer",
        content=header + cloud.tobytes(),
        headers={"content-type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200
    json_size = int(response.headers["inference-header-content-length"])
    meta = json.loads(response.content[:json_size])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == 4 * len(CARDS[CLASSIFIER].class_names)
    truncated = client.post(
        f"/v2/models/{CLASSIFIER}/infer",
        content=header + cloud.tobytes()[:-4],
        headers={"content-type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
    )
    assert truncated.status_code == 400 and "binary data ends" in truncated.json()["error"]
    for body, needle in [
        (b"{", "malformed JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"inputs": []}', "non-empty list"),
        (b'{"inputs": [{"name": "points", "datatype": "FP32", "shape": [1, 2, 3], "data": [1, 2]}]}', "needs 6"),
        (b'{"inputs": [{"name": "points", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}', "not supported"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}', "unknown input"),
    ]:
        bad = client.post(f"/v2/models/{CLASSIFIER}/infer", content=body, headers={"content-type": "application/json"})
        assert bad.status_code == 400 and needle in bad.json()["error"], (body, bad.text)
    assert client.get(f"/v2/models/{CLASSIFIER}/versions/2").status_code == 404
    assert client.get(f"/v2/models/{CLASSIFIER}/versions/1/ready").json() == {"name": CLASSIFIER, "ready": True}
