"""Every kind of bad input gets a 4xx JSON error that names the problem (never a 500, never a dead worker)."""

from __future__ import annotations

import io
import socket
import time

import numpy as np
import pytest
from repo_builder import CLASSIFIER, PART_SEGMENTER
from server_helpers import MAX_BODY_BYTES, MAX_POINTS, MIN_POINTS_CLASSIFIER

from pointserve.data.formats import point_cloud_to_bytes

JSON = {"content-type": "application/json"}
BINARY = {"content-type": "application/octet-stream"}
NPY = {"content-type": "application/x-npy"}
CLS = f"/v1/models/{CLASSIFIER}/predict"
SEG = f"/v1/models/{PART_SEGMENTER}/predict"
GOOD = np.random.default_rng(1).standard_normal((32, 3)).astype(np.float32)


def binary(points) -> bytes:
    return np.asarray(points, dtype="<f4").tobytes()


def npy_of(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)  # object arrays need it to be written; the server never unpickles
    return buffer.getvalue()


def with_value(value: float) -> np.ndarray:
    points = GOOD.copy()
    points[5, 1] = value
    return points


# (id, method, path, kwargs for httpx, expected status, words the error must contain)
CASES = [
    ("malformed-json", "POST", CLS, {"content": b'{"points": [[1, 2, 3]', "headers": JSON}, 400, "malformed JSON"),
    ("json-not-object", "POST", CLS, {"content": b"[1, 2, 3]", "headers": JSON}, 400, "must be an object"),
    ("json-nan-literal", "POST", CLS, {"content": b'{"points": [[NaN, 1, 2]]}', "headers": JSON}, 400, "malformed"),
    ("json-empty-body", "POST", CLS, {"content": b"", "headers": JSON}, 400, "empty body"),
    (
        "wrong-content-type",
        "POST",
        CLS,
        {"content": b"1 2 3", "headers": {"content-type": "text/plain"}},
        415,
        "text/plain",
    ),
    ("no-content-type", "POST", CLS, {"content": binary(GOOD)}, 415, "no Content-Type"),
    ("flat-list", "POST", CLS, {"json": {"points": [1.0, 2.0, 3.0]}}, 400, "shape (3,)"),
    ("points-not-list", "POST", CLS, {"json": {"points": "1 2 3"}}, 400, "must be a list of points"),
    (
        "ragged-points",
        "POST",
        CLS,
        {"json": {"points": [[1, 2, 3], [1, 2]] * 8}},
        400,
        "points[1]: each point must have 3",
    ),
    ("two-coordinates", "POST", CLS, {"json": {"points": [[1.0, 2.0]] * 10}}, 400, "3 coordinates, got 2"),
    ("four-coordinates-binary", "POST", CLS, {"content": binary(np.ones((10, 4))), "headers": BINARY}, 400, ""),
    ("string-coordinates", "POST", CLS, {"json": {"points": [["1", "2", "3"]] * 10}}, 400, "only numbers"),
    ("bool-coordinates", "POST", CLS, {"json": {"points": [[True, False, True]] * 10}}, 400, "only numbers"),
    ("bool-among-numbers", "POST", CLS, {"json": {"points": [[True, 0.5, 2]] * 10}}, 400, "only numbers"),
    (
        "shape-below-float32-resolution-json",
        "POST",
        CLS,
        {"json": {"points": (GOOD.astype(np.float64) * 1e-3 + 1e6).tolist()}},
        400,
        "nearby origin",
    ),
    (
        "shape-below-float32-resolution-binary",
        "POST",
        CLS,
        {"content": binary(GOOD * 0.1 + 1e6), "headers": BINARY},  # float32 steps of 1/16 at 1e6
        400,
        "nearby origin",
    ),
    (
        "top-k-past-64-bits-query",
        "POST",
        CLS + "?top_k=99999999999999999999",
        {"content": binary(GOOD), "headers": BINARY},
        400,
        "top_k must be at most",
    ),
    ("deep-nesting", "POST", CLS, {"json": {"points": [[[[1.0, 2.0, 3.0]]]] * 10}}, 400, "shape (10, 1, 1, 3)"),
    ("nan-binary", "POST", CLS, {"content": binary(with_value(np.nan)), "headers": BINARY}, 400, "NaN, infinite"),
    ("inf-binary", "POST", CLS, {"content": binary(with_value(np.inf)), "headers": BINARY}, 400, "points[5][1]"),
    (
        "beyond-float32-json",
        "POST",
        CLS,
        {"content": b'{"points": [[1e39, 0, 0]' + b", [0, 1, 2]" * 9 + b"]}", "headers": JSON},
        400,
        "beyond float32",
    ),
    ("empty-json-cloud", "POST", CLS, {"json": {"points": []}}, 400, "empty"),
    ("empty-binary-cloud", "POST", CLS, {"content": b"", "headers": BINARY}, 400, "empty"),
    (
        "too-few-points",
        "POST",
        CLS,
        {"content": binary(GOOD[:5]), "headers": BINARY},
        400,
        f"at least {MIN_POINTS_CLASSIFIER}",
    ),
    (
        "too-many-points",
        "POST",
        CLS,
        {"content": binary(np.zeros((MAX_POINTS + 1, 3))), "headers": BINARY},
        413,
        f"more than the limit of {MAX_POINTS}",
    ),
    (
        "body-over-limit",
        "POST",
        CLS,
        {"content": b"\0" * (MAX_BODY_BYTES + 12), "headers": BINARY},
        413,
        f"larger than the limit of {MAX_BODY_BYTES}",
    ),
    ("partial-point-binary", "POST", CLS, {"content": b"\0" * 13, "headers": BINARY}, 400, "not whole points"),
    (
        "npy-object-array",
        "POST",
        CLS,
        {"content": npy_of(np.array([[1, "a", None]] * 10, dtype=object)), "headers": NPY},
        400,
        "dtype object",
    ),
    ("npy-garbage", "POST", CLS, {"content": b"\x93NUMPY garbage", "headers": NPY}, 400, "not a valid .npy"),
    ("npy-1d", "POST", CLS, {"content": npy_of(np.zeros(30, np.float32)), "headers": NPY}, 400, "expected (N, C)"),
    ("unknown-model", "POST", "/v1/models/nope/predict", {"content": binary(GOOD), "headers": BINARY}, 404, "'nope'"),
    ("unknown-model-info", "GET", "/v1/models/nope", {}, 404, "no model 'nope'"),
    ("unknown-version-v2", "GET", f"/v2/models/{CLASSIFIER}/versions/9", {}, 404, "version '9'"),
    ("unknown-version-infer", "POST", f"/v2/models/{CLASSIFIER}/versions/x/infer", {"json": {}}, 404, "version 'x'"),
    (
        "unknown-category",
        "POST",
        SEG + "?category=chair",
        {"content": binary(GOOD), "headers": BINARY},
        400,
        "unknown category 'chair'",
    ),
    (
        "category-id-out-of-range",
        "POST",
        SEG,
        {"json": {"points": GOOD.tolist(), "category": 7}},
        400,
        "unknown category id 7",
    ),
    ("category-wrong-type", "POST", SEG, {"json": {"points": GOOD.tolist(), "category": [1]}}, 400, "name or an id"),
    ("missing-category", "POST", SEG, {"content": binary(GOOD), "headers": BINARY}, 400, "needs the object category"),
    (
        "category-for-classifier",
        "POST",
        CLS,
        {"json": {"points": GOOD.tolist(), "category": "mug"}},
        400,
        "takes no category",
    ),
    ("top-k-zero-query", "POST", CLS + "?top_k=0", {"content": binary(GOOD), "headers": BINARY}, 400, "top_k"),
    ("top-k-text-json", "POST", CLS, {"json": {"points": GOOD.tolist(), "top_k": "many"}}, 400, "top_k"),
    (
        "probabilities-not-bool",
        "POST",
        CLS,
        {"json": {"points": GOOD.tolist(), "return_probabilities": "maybe"}},
        400,
        "true or false",
    ),
    (
        "unknown-field",
        "POST",
        CLS,
        {"json": {"points": GOOD.tolist(), "colour": "red"}},
        400,
        "unknown field(s) colour",
    ),
    ("points-and-instances", "POST", CLS, {"json": {"points": [], "instances": []}}, 400, "exactly one of"),
    ("empty-instances", "POST", CLS, {"json": {"instances": []}}, 400, "1 to 256 clouds, got 0"),
    (
        "too-many-instances",
        "POST",
        CLS,
        {"json": {"instances": [{"points": [[0, 0, 0]] * 8}] * 257}},
        400,
        "1 to 256 clouds, got 257",
    ),
    ("instance-not-object", "POST", CLS, {"json": {"instances": [[1, 2, 3]]}}, 400, "instances[0]"),
    ("upload-unknown-extension", "POST", CLS, {"files": {"file": ("mesh.obj", b"v 1 2 3\n")}}, 415, ".obj"),
    ("upload-no-file", "POST", CLS, {"files": {"top_k": (None, "2")}}, 400, "no file"),
    (
        "upload-corrupt-ply",
        "POST",
        CLS,
        {"files": {"file": ("c.ply", b"ply\nformat binary\nend_header\n\x00")}},
        400,
        "c.ply",
    ),
    (
        "upload-bad-xyz",
        "POST",
        CLS,
        {"files": {"file": ("c.xyz", b"1 2 3\n4 five 6\n")}},
        400,
        "'five' is not a number",
    ),
    (
        "upload-unknown-field",
        "POST",
        CLS,
        {"files": {"file": ("c.npy", point_cloud_to_bytes(GOOD, "npy"))}, "data": {"x": "1"}},
        400,
        "unknown form field",
    ),
    (
        "multipart-without-boundary",
        "POST",
        CLS,
        {"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}},
        400,
        "multipart",
    ),
    ("wrong-method", "GET", CLS, {}, 405, "Method Not Allowed"),
    ("unknown-route", "GET", "/v3/anything", {}, 404, "Not Found"),
    (
        "v2-bad-header-length",
        "POST",
        f"/v2/models/{CLASSIFIER}/infer",
        {"content": b"{}", "headers": {"Inference-Header-Content-Length": "99"}},
        400,
        "outside the body",
    ),
    (
        "v2-shape-negative",
        "POST",
        f"/v2/models/{CLASSIFIER}/infer",
        {"json": {"inputs": [{"name": "points", "datatype": "FP32", "shape": [1, -1, 3], "data": []}]}},
        400,
        "non-negative",
    ),
    (
        "v2-two-d-points",
        "POST",
        f"/v2/models/{CLASSIFIER}/infer",
        {"json": {"inputs": [{"name": "points", "datatype": "FP32", "shape": [10, 3], "data": [0.5] * 30}]}},
        400,
        "(B, N, 3)",
    ),
    (
        "unknown-query-parameter",
        "POST",
        CLS + "?topk=3",
        {"content": binary(GOOD), "headers": BINARY},
        400,
        "unknown query parameter(s) topk",
    ),
    (
        "v2-true-among-numbers",  # numpy would read the true as 1.0
        "POST",
        f"/v2/models/{CLASSIFIER}/infer",
        {"json": {"inputs": [{"name": "points", "datatype": "FP32", "shape": [1, 8, 3], "data": [True] + [0.5] * 23}]}},
        400,
        "input 'points'[0]: must contain only numbers, found booleans",
    ),
    (
        "v2-boolean-category",
        "POST",
        f"/v2/models/{PART_SEGMENTER}/infer",
        {
            "json": {
                "inputs": [
                    {"name": "points", "datatype": "FP32", "shape": [1, 32, 3], "data": GOOD.ravel().tolist()},
                    {"name": "category", "datatype": "BOOL", "shape": [1], "data": [True]},
                ]
            }
        },
        400,
        "input 'category'[0] must be a name or an id, got true",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_gets_a_4xx_json_error_naming_the_problem(client, case):
    _, method, path, kwargs, status, words = case
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error, str) and words in error, error


def test_the_server_still_answers_after_every_hostile_input(client):
    for case in CASES:
        client.request(case[1], case[2], **case[3])
    response = client.post(CLS, content=binary(GOOD), headers=BINARY)
    assert response.status_code == 200 and "class_id" in response.json()


def _read_response(sock: socket.socket, first: bytes) -> bytes:
    """Read the rest of an HTTP response whose first bytes are ``first`` (headers + Content-Length body)."""
    data = first
    sock.settimeout(10)
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _raw_exchange(server: str, head: bytes, body_chunks: list[bytes], pause_s: float = 0.0) -> tuple[bytes, int]:
    """Send ``head`` then chunks until the server answers; returns (answer, bytes of body sent)."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        sent = 0
        sock.settimeout(0.3)
        for chunk in body_chunks:
            try:
                answer = sock.recv(65536)
                if answer:
                    return _read_response(sock, answer), sent
            except TimeoutError:
                pass
            try:
                sock.sendall(chunk)
            except OSError:
                break
            sent += len(chunk)
            time.sleep(pause_s)
        return _read_response(sock, b""), sent


def test_an_announced_oversized_body_is_refused_without_reading_it(server):
    head = (
        f"POST {CLS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {100 * MAX_BODY_BYTES}\r\n\r\n"
    ).encode()
    answer, sent = _raw_exchange(server, head, [])
    assert answer.startswith(b"HTTP/1.1 413") and b"larger than the limit" in answer
    assert sent == 0


def test_a_streamed_body_is_cut_off_once_it_passes_the_limit(server):
    head = (
        f"POST {CLS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    piece = b"\0" * (256 * 1024)
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    total_chunks = 4 * MAX_BODY_BYTES // len(piece)  # four times the limit, if the server read it all
    answer, sent = _raw_exchange(server, head, [chunk] * total_chunks, pause_s=0.05)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 2 * MAX_BODY_BYTES


def test_far_from_the_origin_but_resolvable_clouds_are_normalised_not_collapsed(client):
    """Coordinates near 1e20 used to overflow float32's squares in the normalisation and answer like a one-point
    cloud; computed in float64 the two-point cloud keeps its shape (and its own answer)."""
    far = client.post(CLS, json={"points": [[1e20, 0, 0], [1, 1, 1]] * 5})
    line = client.post(CLS, json={"points": [[1, 0, 0], [-1, 0, 0]] * 5})
    single = client.post(CLS, json={"points": [[0, 0, 0]] * 10})
    assert far.status_code == line.status_code == single.status_code == 200
    assert far.json()["top_k"] == line.json()["top_k"]  # the same normalised cloud: two points on the x axis
    assert far.json()["top_k"] != single.json()["top_k"]
