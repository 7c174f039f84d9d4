"""Triton's own tooling against the real server: ``tritonclient``'s config, repository index and statistics calls,
compressed request and response bodies, and the config checked with Triton's protobuf schema."""

from __future__ import annotations

import gzip
import json
import zlib

import numpy as np
import pytest
import tritonclient.http as triton_http
from google.protobuf import json_format
from repo_builder import CARDS, CLASSIFIER, PART_SEGMENTER
from server_helpers import MAX_BODY_BYTES
from tritonclient.grpc import model_config_pb2

INFER = f"/v2/models/{CLASSIFIER}/infer"


@pytest.fixture(scope="module")
def triton(server):
    client = triton_http.InferenceServerClient(url=server.removeprefix("http://"))
    yield client
    client.close()


def _points(clouds: np.ndarray) -> triton_http.InferInput:
    points = triton_http.InferInput("points", list(clouds.shape), "FP32")
    points.set_data_from_numpy(clouds)
    return points


def _model_stats(triton, model: str, version: str = "") -> dict:
    (entry,) = triton.get_inference_statistics(model, version)["model_stats"]
    return entry


def test_server_lists_the_extensions_perf_analyzer_looks_for(triton):
    extensions = triton.get_server_metadata()["extensions"]
    assert {"binary_tensor_data", "statistics", "model_repository"} <= set(extensions)


def test_model_config_is_a_valid_triton_config(triton):
    config = triton.get_model_config(CLASSIFIER)
    parsed = json_format.ParseDict(config, model_config_pb2.ModelConfig())  # refuses any field Triton lacks
    assert parsed.name == CLASSIFIER and parsed.platform == "onnxruntime_onnx" and parsed.backend == "onnxruntime"
    assert parsed.max_batch_size == 8  # the session server's batching.max_batch_size
    (points,) = parsed.input
    assert (points.name, points.data_type, list(points.dims)) == ("points", model_config_pb2.TYPE_FP32, [-1, 3])
    (logits,) = parsed.output
    assert list(logits.dims) == [len(CARDS[CLASSIFIER].class_names)]
    assert parsed.HasField("dynamic_batching")
    assert parsed.dynamic_batching.max_queue_delay_microseconds == 5000  # max_queue_delay_ms 5
    assert all(1 <= b <= 8 for b in parsed.dynamic_batching.preferred_batch_size)
    (group,) = parsed.instance_group
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU and group.count == 1
    assert triton.get_model_config(CLASSIFIER, "1") == config


def test_part_segmentation_config_reshapes_the_category(triton):
    parsed = json_format.ParseDict(triton.get_model_config(PART_SEGMENTER), model_config_pb2.ModelConfig())
    category = next(t for t in parsed.input if t.name == "category")
    assert category.data_type == model_config_pb2.TYPE_INT64 and list(category.dims) == [1]
    assert category.HasField("reshape") and list(category.reshape.shape) == []  # (B, 1) sent, (B,) to the graph
    assert list(parsed.output[0].dims) == [-1, 6]


def test_metadata_shapes_are_the_config_dims_after_the_batch(triton):
    for model in (CLASSIFIER, PART_SEGMENTER):
        config, metadata = triton.get_model_config(model), triton.get_model_metadata(model)
        for key, entries in (("input", metadata["inputs"]), ("output", metadata["outputs"])):
            assert [t["shape"] for t in entries] == [[-1, *t["dims"]] for t in config[key]]
            assert [t["datatype"] for t in entries] == [t["data_type"].removeprefix("TYPE_") for t in config[key]]


def test_config_and_stats_errors_name_the_model(client):
    assert client.get("/v2/models/nope/config").status_code == 404
    missing = client.get(f"/v2/models/{CLASSIFIER}/versions/9/config")
    assert missing.status_code == 404 and "version '9' is not served" in missing.json()["error"]
    assert client.get(f"/v2/models/{CLASSIFIER}/versions/9/stats").status_code == 404
    assert "no model 'nope'" in client.get("/v2/models/nope/stats").json()["error"]


def test_repository_index(triton, client):
    index = triton.get_model_repository_index()
    by_name = {entry["name"]: entry for entry in index}
    assert set(by_name) == {CLASSIFIER, PART_SEGMENTER}
    assert by_name[CLASSIFIER] == {"name": CLASSIFIER, "version": "1", "state": "READY", "reason": ""}
    assert client.post("/v2/repository/index", json={"ready": True}).json() == index
    bad = client.post("/v2/repository/index", json={"ready": "maybe"})
    assert bad.status_code == 400 and "ready must be true or false" in bad.json()["error"]
    assert client.post("/v2/repository/index", json={"unload": True}).status_code == 400
    assert client.post("/v2/repository/index", content=b"{").status_code == 400


def test_statistics_count_inferences(triton, cloud):
    before = _model_stats(triton, CLASSIFIER)
    assert before["name"] == CLASSIFIER and before["version"] == "1"
    triton.infer(CLASSIFIER, [_points(cloud[None])])
    triton.infer(CLASSIFIER, [_points(np.stack([cloud, cloud * 0.5]))])
    after = _model_stats(triton, CLASSIFIER, "1")
    stats, was = after["inference_stats"], before["inference_stats"]
    assert stats["success"]["count"] == was["success"]["count"] + 2  # requests
    assert stats["success"]["ns"] > was["success"]["ns"]
    assert after["inference_count"] == before["inference_count"] + 3  # clouds computed
    assert after["execution_count"] > before["execution_count"]  # batches run
    assert after["last_inference"] >= before["last_inference"] and after["last_inference"] > 0
    for phase in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert stats[phase]["count"] == was[phase]["count"] + 3, phase
        assert stats[phase]["ns"] > was[phase]["ns"], phase
    assert stats["cache_hit"] == {"count": 0, "ns": 0}  # perf_analyzer reads it; no response cache here
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in after["batch_stats"]}
    assert sum(size * count for size, count in sizes.items()) == after["inference_count"]
    assert sum(sizes.values()) == after["execution_count"]
    everything = triton.get_inference_statistics()["model_stats"]
    assert {entry["name"] for entry in everything} == {CLASSIFIER, PART_SEGMENTER}


def test_failed_requests_are_counted(triton, cloud):
    before = _model_stats(triton, PART_SEGMENTER)["inference_stats"]["fail"]["count"]
    with pytest.raises(triton_http.InferenceServerException, match="needs the object category"):
        triton.infer(PART_SEGMENTER, [_points(cloud[None])])
    assert _model_stats(triton, PART_SEGMENTER)["inference_stats"]["fail"]["count"] == before + 1


@pytest.mark.parametrize(
    "request_compression, response_compression",
    [("gzip", None), ("deflate", None), (None, "gzip"), (None, "deflate"), ("gzip", "gzip")],
)
def test_compressed_bodies_give_the_same_logits(triton, cloud, request_compression, response_compression):
    """A part segmentation: its per-point answer is big enough to be compressed when asked (a classification's
    few logits never are)."""
    batch = np.stack([cloud, cloud[::-1].copy()])
    category = triton_http.InferInput("category", [2, 1], "INT64")
    category.set_data_from_numpy(np.array([[0], [1]], dtype=np.int64))
    inputs = [_points(batch), category]
    plain = triton.infer(PART_SEGMENTER, inputs).as_numpy("logits")
    compressed = triton.infer(
        PART_SEGMENTER,
        inputs,
        request_compression_algorithm=request_compression,
        response_compression_algorithm=response_compression,
    ).as_numpy("logits")
    assert compressed.shape == (2, len(cloud), 6)
    np.testing.assert_array_equal(compressed, plain)


def _json_request(cloud: np.ndarray) -> bytes:
    return b'{"inputs":[{"name":"points","datatype":"FP32","shape":[1,%d,3],"data":%s}]}' % (
        len(cloud),
        str(cloud.ravel().tolist()).encode(),
    )


def test_compressed_answer_keeps_the_uncompressed_header_length(client, cloud):
    points = {"name": "points", "datatype": "FP32", "shape": [1, len(cloud), 3]}
    category = {"name": "category", "datatype": "INT64", "shape": [1, 1], "data": [0]}
    request = {"inputs": [{**points, "parameters": {"binary_data_size": cloud.nbytes}}, category]}
    header = json.dumps({**request, "parameters": {"binary_data_output": True}}).encode()
    headers = {"Inference-Header-Content-Length": str(len(header)), "Accept-Encoding": "gzip"}
    segment = f"/v2/models/{PART_SEGMENTER}/infer"
    response = client.post(segment, content=header + cloud.tobytes(), headers=headers)
    assert response.status_code == 200 and response.headers["content-encoding"] == "gzip"
    body = response.content  # httpx inflated it
    json_size = int(response.headers["inference-header-content-length"])
    assert body[:json_size].endswith(b"}") and len(body) == json_size + 4 * len(cloud) * 6
    headers["Accept-Encoding"] = "gzip;q=0"
    identity = client.post(segment, content=header + cloud.tobytes(), headers=headers)
    assert identity.status_code == 200 and "content-encoding" not in identity.headers
    assert identity.content == body
    # A classification's few logits are not worth compressing, whatever the client accepts.
    small = client.post(INFER, content=_json_request(cloud), headers={"Accept-Encoding": "gzip"})
    assert small.status_code == 200 and "content-encoding" not in small.headers


def test_raw_deflate_and_multi_member_gzip_are_read(client, cloud):
    body = _json_request(cloud)
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw_deflate = raw.compress(body) + raw.flush()
    half = len(body) // 2
    two_members = gzip.compress(body[:half]) + gzip.compress(body[half:])
    plain = client.post(INFER, content=body).json()["outputs"][0]["data"]
    for encoding, content in (("deflate", raw_deflate), ("gzip", two_members)):
        response = client.post(INFER, content=content, headers={"Content-Encoding": encoding})
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == plain


def test_compression_also_serves_v1(client, cloud):
    body = cloud.tobytes()
    headers = {"content-type": "application/octet-stream"}
    plain = client.post(f"/v1/models/{CLASSIFIER}/predict", content=body, headers=headers)
    packed = client.post(
        f"/v1/models/{CLASSIFIER}/predict", content=gzip.compress(body), headers={**headers, "Content-Encoding": "gzip"}
    )
    assert packed.status_code == 200 and packed.json()["label"] == plain.json()["label"]


def test_bad_compressed_bodies_are_refused_with_the_reason(client, cloud):
    body = gzip.compress(_json_request(cloud))
    corrupt = body[:10] + bytes(b ^ 0x5A for b in body[10:40]) + body[40:]
    cases = [
        ("gzip", corrupt, 400, "not valid gzip data"),
        ("gzip", body[: len(body) // 2], 400, "gzip request body is truncated"),
        ("gzip", b"plain text, not gzip", 400, "not valid gzip data"),
        ("deflate", zlib.compress(b"{}") + b"junk", 400, "after the end of its stream"),
        ("br", body, 415, "Content-Encoding 'br' is not supported"),
        # A zip bomb: a few KiB that inflate past the body limit are refused as they inflate, not after.
        ("gzip", gzip.compress(b"0" * (MAX_BODY_BYTES + 1)), 413, "inflates to more than the limit"),
    ]
    for encoding, content, status, needle in cases:
        response = client.post(INFER, content=content, headers={"Content-Encoding": encoding})
        assert response.status_code == status, (encoding, response.text)
        assert needle in response.json()["error"], (encoding, response.text)


def test_service_config_is_what_the_export_writes(server, repository, client, tmp_path):
    """One description, two renderings: the served JSON and the exported config.pbtxt, with the same batching."""
    from google.protobuf import text_format

    from pointserve.deploy.triton import export_triton
    from pointserve.repository.store import Repository

    served = client.get(f"/v2/models/{CLASSIFIER}/config").json()
    dynamic = served["dynamic_batching"]
    exported = export_triton(
        Repository(repository).open(CLASSIFIER),
        tmp_path,
        max_batch_size=served["max_batch_size"],
        max_queue_delay_ms=dynamic["max_queue_delay_microseconds"] / 1000,
        preferred_batch_sizes=tuple(dynamic.get("preferred_batch_size", ())),
    )
    written = text_format.Parse(exported.config_file.read_text(), model_config_pb2.ModelConfig())
    written.output[0].ClearField("label_filename")  # the export writes labels.txt next to it; the service has none
    assert written == json_format.ParseDict(served, model_config_pb2.ModelConfig())
