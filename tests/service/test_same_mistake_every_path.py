"""One set of input rules: the same mistake gets the same status and the same reason on every path that can carry
it (v1 JSON body and instances, float32 binary, .npy, uploaded .npy/.xyz/.txt/.ply/.pcd files, the query string and
form fields; v2 JSON and binary tensors and their parameters).

Each message is "<where><reason>": ``where`` names the place in that encoding ("points[5][1]", "instances[0].points",
"cloud.ply", "input 'points'[0]"), and what follows it must be the same text on every path.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pytest
from repo_builder import CLASSIFIER, PART_SEGMENTER
from server_helpers import MAX_POINTS, MIN_POINTS_CLASSIFIER

from pointserve.data.formats import point_cloud_to_bytes

GOOD = np.random.default_rng(1).standard_normal((32, 3)).astype(np.float32)
MAX_CLOUDS = 256  # the session server's max_instances_per_request (the default)
JSON = {"content-type": "application/json"}
BINARY = {"content-type": "application/octet-stream"}
NPY = {"content-type": "application/x-npy"}


@dataclass
class Path:
    """One way of sending a request (a POST): its name, the place its messages name, and the request."""

    name: str
    where: str
    url: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def v1(model: str) -> str:
    return f"/v1/models/{model}/predict"


def v2(model: str) -> str:
    return f"/v2/models/{model}/infer"


class RawNumber:
    """A number written into the JSON as given (an integer past 64 bits, which orjson cannot write)."""

    def __init__(self, text: str):
        self.text = text


def json_text(value: Any) -> bytes:
    """JSON as a client writes it, ``RawNumber`` values included."""
    text = orjson.dumps(value, default=lambda v: "\0" + v.text + "\0")
    return text.replace(b'"\\u0000', b"").replace(b'\\u0000"', b"")


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def text_rows(array: np.ndarray) -> bytes:
    """XYZ / TXT rows of float64 values (so 1e39 stays 1e39 in the file, NaN is "nan")."""
    buffer = io.BytesIO()
    np.savetxt(buffer, np.asarray(array, dtype=np.float64), fmt="%.17g")
    return buffer.getvalue()


# -------------------------------------------------------------------------------------------- paths for clouds
def cloud_paths(
    points: np.ndarray, model: str = CLASSIFIER, *, json_ok: bool = True, float32_ok: bool = True, files: bool = True
) -> list[Path]:
    """Every path a numeric (N, C) cloud can take. ``json_ok``: JSON can write it (no NaN/inf); ``float32_ok``:
    float32 carries it (nothing beyond ±3.4e38), so the float32 forms send it too; ``files``: the .npy body and
    uploads too (their readers refuse fewer than 3 columns on their own)."""
    points64 = np.asarray(points, dtype=np.float64)
    points32 = np.asarray(points, dtype=np.float32) if float32_ok else None
    as_list = points64.tolist()
    url, v2_url, oip_where = v1(model), v2(model), "input 'points'[0]"

    def upload(name: str, data: bytes) -> Path:
        return Path(f"upload-{name.rsplit('.', 1)[1]}", name, url, {"files": {"file": (name, data)}})

    paths = []
    if json_ok:
        paths += [
            Path("json", "points", url, {"content": json_text({"points": as_list}), "headers": JSON}),
            Path(
                "json-instances",
                "instances[0].points",
                url,
                {"content": json_text({"instances": [{"points": as_list}]}), "headers": JSON},
            ),
            Path("oip-json-fp64", oip_where, v2_url, oip_json("points", "FP64", points64)),
        ]
        if float32_ok:
            paths.append(Path("oip-json-fp32", oip_where, v2_url, oip_json("points", "FP32", points64)))
    paths.append(Path("oip-binary-fp64", oip_where, v2_url, oip_binary("points", "FP64", points64)))
    if files:
        paths += [
            Path("npy-float64", "points", url, {"content": npy(points64), "headers": NPY}),
            upload("cloud.npy", npy(points64)),
            upload("cloud.xyz", text_rows(points64)),
            upload("c.txt", text_rows(points64)),
        ]
    if points32 is None:
        return paths
    paths.append(Path("oip-binary-fp32", oip_where, v2_url, oip_binary("points", "FP32", points32)))
    if files:
        paths += [
            Path("npy-float32", "points", url, {"content": npy(points32), "headers": NPY}),
            upload("cloud.ply", point_cloud_to_bytes(points32, "ply")),
            upload("cloud.pcd", point_cloud_to_bytes(points32, "pcd")),
        ]
    if points32.shape[1] == 3:  # raw float32 rows carry no shape: 3 coordinates per point
        paths.append(Path("binary", "points", url, {"content": points32.tobytes(), "headers": BINARY}))
    return paths


def oip_json(name: str, datatype: str, array: np.ndarray, extra: list[dict] | None = None, **request) -> dict:
    tensor = {"name": name, "datatype": datatype, "shape": [1, *array.shape], "data": array.ravel().tolist()}
    return {"content": json_text({"inputs": [tensor, *(extra or [])], **request}), "headers": JSON}


def oip_binary(name: str, datatype: str, array: np.ndarray) -> dict:
    data = np.ascontiguousarray(array, dtype="<f8" if datatype == "FP64" else "<f4").tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "datatype": datatype,
                    "shape": [1, *array.shape],
                    "parameters": {"binary_data_size": len(data)},
                }
            ]
        }
    )
    return {
        "content": header + data,
        "headers": {"content-type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
    }


def json_points_paths(points: list, model: str = CLASSIFIER) -> list[Path]:
    """Paths for a cloud only JSON can write (booleans among the numbers, ragged rows)."""
    body = {"points": points}
    return [
        Path("json", "points", v1(model), {"content": json_text(body), "headers": JSON}),
        Path(
            "json-instances",
            "instances[0].points",
            v1(model),
            {"content": json_text({"instances": [body]}), "headers": JSON},
        ),
    ]


def with_value(value: float) -> np.ndarray:
    points = GOOD.astype(np.float64)
    points[5, 1] = value
    return points


def with_boolean() -> list:
    points = GOOD.astype(np.float64).tolist()
    points[5][1] = True
    return points


def oip_boolean_paths() -> list[Path]:
    """Booleans as coordinates over v2: JSON ``true`` in an FP32 tensor's data, and a BOOL tensor."""
    points = with_boolean()
    flat = [c for p in points for c in p]
    tensor = {"name": "points", "datatype": "FP32", "shape": [1, len(points), 3], "data": flat}
    bools = np.zeros((1, 16, 3), dtype=bool)
    bool_tensor = {"name": "points", "datatype": "BOOL", "shape": [1, 16, 3], "data": bools.ravel().tolist()}
    return [
        Path(
            "oip-json-true",
            "input 'points'[0]",
            v2(CLASSIFIER),
            {"content": json_text({"inputs": [tensor]}), "headers": JSON},
        ),
        Path(
            "oip-json-bool",
            "input 'points'[0]",
            v2(CLASSIFIER),
            {"content": json_text({"inputs": [bool_tensor]}), "headers": JSON},
        ),
    ]


def empty_paths() -> list[Path]:
    empty = np.zeros((0, 3), dtype=np.float32)
    return [
        Path("json", "points", v1(CLASSIFIER), {"json": {"points": []}}),
        Path("json-instances", "instances[0].points", v1(CLASSIFIER), {"json": {"instances": [{"points": []}]}}),
        Path("binary", "points", v1(CLASSIFIER), {"content": b"", "headers": BINARY}),
        Path("npy", "points", v1(CLASSIFIER), {"content": npy(empty), "headers": NPY}),
        Path("upload-npy", "e.npy", v1(CLASSIFIER), {"files": {"file": ("e.npy", npy(empty))}}),
        Path("upload-xyz", "e.xyz", v1(CLASSIFIER), {"files": {"file": ("e.xyz", b"")}}),
        Path(
            "upload-ply",
            "e.ply",
            v1(CLASSIFIER),
            {"files": {"file": ("e.ply", point_cloud_to_bytes(empty, "ply"))}},
        ),
        Path(
            "upload-pcd",
            "e.pcd",
            v1(CLASSIFIER),
            {"files": {"file": ("e.pcd", point_cloud_to_bytes(empty, "pcd"))}},
        ),
        Path("oip-json", "input 'points'[0]", v2(CLASSIFIER), oip_json("points", "FP32", empty)),
        Path("oip-binary", "input 'points'[0]", v2(CLASSIFIER), oip_binary("points", "FP32", empty)),
    ]


# ------------------------------------------------------------------------------------------- paths for options
def option_paths(name: str, value: Any, text: str, *, model: str = CLASSIFIER) -> list[Path]:
    """An option sent in the JSON body (``value``, written as JSON), the query string and a form field (``text``)."""
    where = name  # every /v1 path names an option alike
    points = GOOD.tolist()
    return [
        Path(
            "json-body",
            where,
            v1(model),
            {"content": json_text({"points": points, name: value}), "headers": JSON},
        ),
        Path(
            "json-instances-body",
            where,
            v1(model),
            {"content": json_text({"instances": [{"points": points}], name: value}), "headers": JSON},
        ),
        Path(
            "query+binary",
            where,
            v1(model),
            {"content": GOOD.tobytes(), "headers": BINARY, "params": {name: text}},
        ),
        Path("query+json", where, v1(model), {"json": {"points": points}, "params": {name: text}}),
        Path(
            "query+upload",
            where,
            v1(model),
            {"files": {"file": ("c.npy", npy(GOOD))}, "params": {name: text}},
        ),
        Path(
            "form-field",
            where,
            v1(model),
            {"files": {"file": ("c.npy", npy(GOOD))}, "data": {name: text}},
        ),
    ]


def category_paths(value: Any, text: str, *, oip: list[tuple[str, Any]] = (), located: bool = True) -> list[Path]:
    """A category for the part segmenter, every way /v1 takes one, and each v2 (datatype, value) in ``oip``.

    ``located=False``: the model's lookup of names and ids refuses it, with one message that names no place."""
    points = GOOD.tolist()
    paths = option_paths("category", value, text, model=PART_SEGMENTER)
    paths.append(
        Path(
            "json-instance-category",
            "instances[0].category",
            v1(PART_SEGMENTER),
            {"content": json_text({"instances": [{"points": points, "category": value}]}), "headers": JSON},
        )
    )
    for datatype, oip_value in oip:  # v2 carries ids only
        category = {"name": "category", "datatype": datatype, "shape": [1], "data": [oip_value]}
        paths.append(
            Path(
                f"oip-json-{datatype}",
                "input 'category'[0]",
                v2(PART_SEGMENTER),
                oip_json("points", "FP32", GOOD, extra=[category]),
            )
        )
        if datatype != "BOOL" and not isinstance(oip_value, bool):
            paths.append(
                Path(
                    f"oip-binary-{datatype}",
                    "input 'category'[0]",
                    v2(PART_SEGMENTER),
                    oip_binary_category(datatype, oip_value),
                )
            )
    if not located:
        for path in paths:
            path.where = ""
    return paths


def oip_binary_category(datatype: str, value: Any) -> dict:
    dtype = {"INT64": "<i8", "FP32": "<f4"}[datatype]
    points, category = GOOD.astype("<f4").tobytes(), np.array([value], dtype=dtype).tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "points",
                    "datatype": "FP32",
                    "shape": [1, *GOOD.shape],
                    "parameters": {"binary_data_size": len(points)},
                },
                {
                    "name": "category",
                    "datatype": datatype,
                    "shape": [1],
                    "parameters": {"binary_data_size": len(category)},
                },
            ]
        }
    )
    return {
        "content": header + points + category,
        "headers": {"content-type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
    }


def flag_paths(value: Any, text: str) -> list[Path]:
    """A yes/no option: /v1's return_probabilities, and v2's parameters.binary_data_output."""
    request = {"parameters": {"binary_data_output": value}}
    return [
        *option_paths("return_probabilities", value, text),
        Path(
            "oip-parameters",
            "request.parameters.binary_data_output",
            v2(CLASSIFIER),
            oip_json("points", "FP32", GOOD, **request),
        ),
    ]


def unknown_option_paths() -> list[Path]:
    return [
        Path("json-body", "unknown field(s)", v1(CLASSIFIER), {"json": {"points": GOOD.tolist(), "topk": 3}}),
        Path(
            "query",
            "unknown query parameter(s)",
            v1(CLASSIFIER),
            {"content": GOOD.tobytes(), "headers": BINARY, "params": {"topk": "3"}},
        ),
        Path(
            "form-field",
            "unknown form field(s)",
            v1(CLASSIFIER),
            {"files": {"file": ("c.npy", npy(GOOD))}, "data": {"topk": "3"}},
        ),
    ]


def cloud_count_paths(count: int) -> list[Path]:
    small = GOOD[:MIN_POINTS_CLASSIFIER]
    batch = np.broadcast_to(small, (count, *small.shape))
    paths = [
        Path(
            "json-instances",
            "instances",
            v1(CLASSIFIER),
            {"json": {"instances": [{"points": small.tolist()}] * count}},
        ),
        Path("oip-json", "input 'points'", v2(CLASSIFIER), oip_batch(batch, binary=False)),
        Path("oip-binary", "input 'points'", v2(CLASSIFIER), oip_batch(batch, binary=True)),
    ]
    if count:  # a multipart body without a file is refused as such ("the multipart upload has no file")
        files = [("file", (f"c{i}.npy", npy(small))) for i in range(count)]
        paths.append(Path("upload", "files", v1(CLASSIFIER), {"files": files}))
    return paths


def oip_batch(batch: np.ndarray, *, binary: bool) -> dict:
    tensor: dict[str, Any] = {"name": "points", "datatype": "FP32", "shape": list(batch.shape)}
    if not binary:
        tensor["data"] = batch.ravel().tolist()
        return {"content": json_text({"inputs": [tensor]}), "headers": JSON}
    data = np.ascontiguousarray(batch, dtype="<f4").tobytes()
    tensor["parameters"] = {"binary_data_size": len(data)}
    header = orjson.dumps({"inputs": [tensor]})
    return {
        "content": header + data,
        "headers": {"content-type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
    }


UPLOADS_TAKING_XYZ = ("upload-ply", "upload-pcd", "upload-xyz", "upload-txt")
BIG = RawNumber("99999999999999999999")  # past 64 bits: orjson reads it as the float 1e20, a query string as text
NOT_FINITE = "NaN, infinite, or beyond float32's range"

# (id, expected status, words every message holds, paths)
MISTAKES = [
    ("nan-coordinate", 400, NOT_FINITE, cloud_paths(with_value(np.nan), json_ok=False)),
    ("inf-coordinate", 400, NOT_FINITE, cloud_paths(with_value(-np.inf), json_ok=False)),
    ("beyond-float32", 400, NOT_FINITE, cloud_paths(with_value(1e39), float32_ok=False)),
    (
        "shape-below-float32-resolution",  # a unit-size shape 1e20 from the origin: float32 merges its points
        400,
        "would merge",
        cloud_paths(np.array([[1e20, 0, 0], [1e20, 1, 1]] * 5)),
    ),
    (
        "boolean-coordinate",
        400,
        "only numbers, found booleans",
        json_points_paths(with_boolean()) + oip_boolean_paths(),
    ),
    (
        "four-coordinates",  # files that name their fields, and text (x y z first), give xyz: see test_api_v1
        400,
        "3 coordinates, got 4",
        [p for p in cloud_paths(np.ones((10, 4))) if p.name not in UPLOADS_TAKING_XYZ],
    ),
    (
        "two-coordinates",  # the file readers refuse files of fewer than 3 columns themselves, naming the file
        400,
        "3 coordinates, got 2",
        cloud_paths(GOOD[:, :2], files=False)
        + [Path("json-ragged", "points[1]", v1(CLASSIFIER), {"json": {"points": [[0, 1, 2], [3, 4]] * 5}})],
    ),
    ("too-few-points", 400, f"needs at least {MIN_POINTS_CLASSIFIER}", cloud_paths(GOOD[:5])),
    ("too-many-points", 413, f"more than the limit of {MAX_POINTS}", cloud_paths(np.zeros((MAX_POINTS + 1, 3)))),
    ("empty-cloud", 400, "the point cloud is empty", empty_paths()),
    ("top-k-past-64-bits", 400, "top_k must be at most", option_paths("top_k", BIG, "99999999999999999999")),
    ("top-k-1e30", 400, "top_k must be at most", option_paths("top_k", 1e30, "1e30")),
    ("top-k-negative", 400, "top_k must be at least 1", option_paths("top_k", -1, "-1")),
    ("top-k-zero", 400, "top_k must be at least 1", option_paths("top_k", 0, "0")),
    ("top-k-boolean", 400, "top_k must be a positive integer, got true", option_paths("top_k", True, "true")),
    ("top-k-fraction", 400, "top_k must be a positive integer, got 1.5", option_paths("top_k", 1.5, "1.5")),
    ("top-k-text", 400, "top_k must be a positive integer, got 'many'", option_paths("top_k", "many", "many")),
    ("flag-not-boolean", 400, "must be true or false, got 'maybe'", flag_paths("maybe", "maybe")),
    ("flag-number", 400, "must be true or false, got 2", flag_paths(2, "2")),
    ("unknown-option", 400, "topk; the options are", unknown_option_paths()),
    ("render-jpg", 400, "render must be \"png\" (or absent for JSON), got 'jpg'", option_paths("render", "jpg", "jpg")),
    ("render-true", 400, 'render must be "png" (or absent for JSON), got true', option_paths("render", True, "true")),
    (
        "unknown-category-name",
        400,
        "unknown category 'chair'; known: mug, lamp",
        category_paths("chair", "chair", located=False),
    ),
    (
        "unknown-category-id",
        400,
        "unknown category id 7; ids are 0..1",
        category_paths(7, "7", oip=[("INT64", 7), ("FP32", 7.0)], located=False),
    ),
    (
        "boolean-category",
        400,
        "must be a name or an id, got true",
        category_paths(True, "true", oip=[("INT64", True), ("BOOL", True)]),
    ),
    ("fractional-category", 400, "must be a name or an id, got 1.5", category_paths(1.5, "1.5", oip=[("FP32", 1.5)])),
    (
        "too-many-clouds",
        400,
        f"may hold 1 to {MAX_CLOUDS} clouds, got {MAX_CLOUDS + 1}",
        cloud_count_paths(MAX_CLOUDS + 1),
    ),
    ("no-clouds", 400, f"may hold 1 to {MAX_CLOUDS} clouds, got 0", cloud_count_paths(0)),
]


def _answer(client, path: Path) -> tuple[int, str]:
    response = client.post(path.url, **path.kwargs)
    assert response.headers["content-type"].startswith("application/json"), (path.name, response.text[:200])
    return response.status_code, response.json().get("error", "")


def _reason(message: str, where: str) -> str:
    """The message without the place it names (what must be the same on every path)."""
    assert message.startswith(where), f"{message!r} does not start with {where!r}"
    return message[len(where) :]


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_the_same_mistake_gets_the_same_status_and_reason_on_every_path(client, mistake):
    _, status, words, paths = mistake
    assert len(paths) >= 2
    table = {}
    for path in paths:
        code, message = _answer(client, path)
        table[path.name] = (code, message)
    shown = "\n".join(f"  {name:24s} {code} {message}" for name, (code, message) in table.items())
    assert all(code == status for code, _ in table.values()), shown
    assert all(words in message for _, message in table.values()), shown
    reasons = {_reason(table[p.name][1], p.where) for p in paths}
    assert len(reasons) == 1, shown


def test_the_options_read_the_same_from_the_query_the_body_and_the_form(client):
    """Valid options spelled as a client of each encoding would: the same answer."""
    points = GOOD.tolist()
    answers = [
        client.post(v1(CLASSIFIER), json={"points": points, "top_k": 2, "return_probabilities": True}),
        client.post(v1(CLASSIFIER), json={"points": points, "top_k": 2.0, "return_probabilities": "yes"}),
        client.post(v1(CLASSIFIER), json={"points": points, "top_k": "2", "return_probabilities": 1}),
        client.post(
            v1(CLASSIFIER),
            content=GOOD.tobytes(),
            headers=BINARY,
            params={"top_k": "2", "return_probabilities": "true"},
        ),
        client.post(
            v1(CLASSIFIER), files={"file": ("c.npy", npy(GOOD))}, data={"top_k": "2", "return_probabilities": "on"}
        ),
    ]
    assert [a.status_code for a in answers] == [200] * len(answers), [a.text for a in answers]
    first = answers[0].json()
    assert len(first["top_k"]) == 2 and "probabilities" in first
    for answer in answers[1:]:
        assert answer.json()["top_k"] == first["top_k"]
        assert answer.json()["probabilities"] == pytest.approx(first["probabilities"], abs=1e-6)


def test_categories_by_name_and_id_from_every_path_give_the_same_answer(client):
    points = GOOD.tolist()
    answers = [
        client.post(v1(PART_SEGMENTER), json={"points": points, "category": "lamp"}),
        client.post(v1(PART_SEGMENTER), json={"points": points, "category": 1}),
        client.post(v1(PART_SEGMENTER), json={"points": points, "category": "1"}),
        client.post(v1(PART_SEGMENTER), json={"instances": [{"points": points, "category": 1.0}]}),
        client.post(v1(PART_SEGMENTER), content=GOOD.tobytes(), headers=BINARY, params={"category": "lamp"}),
        client.post(v1(PART_SEGMENTER), files={"file": ("c.npy", npy(GOOD))}, data={"category": "1"}),
    ]
    assert [a.status_code for a in answers] == [200] * len(answers), [a.text for a in answers]
    labels = [(a.json().get("predictions") or [a.json()])[0]["labels"] for a in answers]
    assert all(found == labels[0] for found in labels)


def test_a_far_but_resolvable_cloud_is_answered_on_every_path(client):
    """A cloud 1e20 from the origin whose own extent is as large keeps its shape in float32: it is answered (like
    the two-point line it normalises to), not refused, whichever path carries it."""
    far = np.array([[1e20, 0, 0], [1, 1, 1]] * 5)
    line = client.post(v1(CLASSIFIER), json={"points": [[1, 0, 0], [-1, 0, 0]] * 5}).json()["top_k"]
    for path in cloud_paths(far):
        if path.url.startswith("/v2"):
            continue  # v2 answers logits; the same cloud's class is checked through /v1
        response = client.post(path.url, **path.kwargs)
        assert response.status_code == 200, (path.name, response.text)
        answer = response.json()
        assert (answer.get("predictions") or [answer])[0]["top_k"] == line, path.name
