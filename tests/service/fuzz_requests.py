"""Hypothesis strategies for malformed and hostile requests to the service, and the check each answer must pass.

Used by ``test_fuzz.py`` (a bounded run) and ``scripts/acceptance_service.py`` (>= 2,000 requests).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import orjson
from hypothesis import strategies as st

MODELS = ("shapes-cls", "parts")
CONTENT_TYPES = (
    "application/json",
    "application/json; charset=utf-8",
    "application/octet-stream",
    "application/x-npy",
    "multipart/form-data; boundary=fuzzfuzz",
    "multipart/form-data",
    "text/plain",
    "",
)
OPTION_KEYS = ("points", "instances", "category", "top_k", "return_probabilities", "return_logits", "x")
DATATYPES = ("FP32", "FP16", "FP64", "INT64", "INT32", "BOOL", "UINT8", "BYTES", "fp32", "")


@dataclass
class FuzzRequest:
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def check_answer(status: int, content_type: str, body: bytes) -> str | None:
    """None when the answer is acceptable (not a 5xx; a 4xx is JSON with a string "error"), else why not."""
    if status >= 500:
        return f"server error {status}: {body[:300]!r}"
    if status >= 400:
        if not content_type.startswith("application/json"):
            return f"{status} without a JSON body ({content_type})"
        try:
            error = orjson.loads(body).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            return f"{status} body is not a JSON object: {body[:200]!r}"
        if not isinstance(error, str) or not error:
            return f"{status} body has no error message: {body[:200]!r}"
    return None


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e3, max_value=1e3),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 1e39, -1e39, 1e-45, 3.4e38]),
)
json_scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(st.sampled_from(OPTION_KEYS) | st.text(max_size=8), inner, max_size=5),
    ),
    max_leaves=40,
)


def _json_bytes(value) -> bytes:
    # orjson refuses NaN/inf and huge ints; the stdlib writes them as the non-JSON tokens some clients send.
    import json

    return json.dumps(value, allow_nan=True).encode()


@st.composite
def point_lists(draw):
    rows = draw(st.integers(min_value=0, max_value=40))
    width = draw(st.sampled_from([0, 1, 2, 3, 3, 3, 4, 6]))
    value = draw(st.one_of(numbers, st.sampled_from(["1", None, True, [1.0]])))
    points = [[draw(st.floats(min_value=-10, max_value=10)) for _ in range(width)] for _ in range(rows)]
    if points and draw(st.booleans()):
        points[draw(st.integers(0, rows - 1))][0:1] = [value]
    if points and draw(st.booleans()):
        points[-1] = points[-1][:-1]  # ragged
    return points


@st.composite
def json_predict_bodies(draw) -> bytes:
    body: dict = {}
    shape = draw(st.sampled_from(["points", "instances", "junk"]))
    if shape == "points":
        body["points"] = draw(point_lists())
    elif shape == "instances":
        body["instances"] = draw(st.lists(st.fixed_dictionaries({"points": point_lists()}) | json_values, max_size=4))
    else:
        body = draw(json_values)
    if isinstance(body, dict):
        for key in draw(st.lists(st.sampled_from(OPTION_KEYS[2:]), max_size=3)):
            body[key] = draw(json_scalars)
    return _json_bytes(body)


@st.composite
def binary_bodies(draw) -> bytes:
    count = draw(st.integers(min_value=0, max_value=64))
    values = draw(st.lists(numbers, min_size=count, max_size=count))
    with np.errstate(over="ignore"):
        data = np.asarray([float(v) if abs(float(v)) < 1e300 else np.inf for v in values], dtype=np.float32).tobytes()
    return data[: draw(st.integers(min_value=0, max_value=len(data)))] if draw(st.booleans()) else data


@st.composite
def npy_bodies(draw) -> bytes:
    dtype = draw(st.sampled_from(["<f4", "<f8", "<i8", "|b1", "<U3", "|O", ">f4"]))
    shape = draw(st.lists(st.integers(min_value=0, max_value=5), min_size=0, max_size=3))
    buffer = io.BytesIO()
    try:
        array = np.zeros(shape, dtype=dtype)
        np.save(buffer, array, allow_pickle=True)
    except (TypeError, ValueError):
        buffer.write(b"\x93NUMPY\x01\x00")
    data = buffer.getvalue()
    cut = draw(st.integers(min_value=0, max_value=len(data)))
    return data[:cut] + draw(st.binary(max_size=16)) if draw(st.booleans()) else data


@st.composite
def multipart_bodies(draw) -> bytes:
    name = draw(st.sampled_from(["c.ply", "c.pcd", "c.xyz", "c.txt", "c.npy", "c.obj", "", "c"]))
    field_name = draw(st.sampled_from(["file", "files", "category", "top_k", "x"]))
    content = draw(
        st.one_of(st.binary(max_size=200), st.sampled_from([b"ply\nformat ascii 1.0\nend_header\n", b"1 2 3\n"]))
    )
    filename = f'; filename="{name}"' if name or draw(st.booleans()) else ""
    part = (
        f'--fuzzfuzz\r\nContent-Disposition: form-data; name="{field_name}"{filename}\r\n\r\n'.encode()
        + content
        + b"\r\n"
    )
    closing = b"--fuzzfuzz--\r\n" if draw(st.booleans()) else b""
    return part * draw(st.integers(min_value=0, max_value=3)) + closing


@st.composite
def v2_bodies(draw) -> tuple[bytes, dict[str, str]]:
    inputs = []
    binary = b""
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        shape = draw(st.lists(st.integers(min_value=-2, max_value=2**40) | st.integers(0, 8), max_size=4))
        tensor: dict = {
            "name": draw(st.sampled_from(["points", "category", "x", ""])),
            "datatype": draw(st.sampled_from(DATATYPES)),
            "shape": shape,
        }
        if draw(st.booleans()):
            tensor["data"] = draw(st.lists(numbers, max_size=30) | json_values)
        else:
            size = draw(st.integers(min_value=-1, max_value=200))
            tensor["parameters"] = {"binary_data_size": size}
            binary += draw(st.binary(max_size=200))
        inputs.append(tensor)
    request: dict = {"inputs": inputs}
    if draw(st.booleans()):
        request["outputs"] = draw(
            st.lists(st.fixed_dictionaries({"name": st.text(max_size=8)}) | json_values, max_size=2)
        )
    if draw(st.booleans()):
        request["parameters"] = {"binary_data_output": draw(json_scalars)}
    header = _json_bytes(request if draw(st.integers(0, 9)) else draw(json_values))
    headers = {"content-type": draw(st.sampled_from(["application/json", "application/octet-stream"]))}
    if binary or draw(st.booleans()):
        length = draw(
            st.sampled_from([len(header), len(header) + 3, 0, -1, 10**12])
            | st.text(alphabet="0123456789-x", min_size=1, max_size=4)
        )
        headers["Inference-Header-Content-Length"] = str(length)
    return header + binary, headers


@st.composite
def hostile_requests(draw, models: tuple[str, ...] = MODELS) -> FuzzRequest:
    """Mostly aimed at served models (so bodies reach the decoders), sometimes at one that does not exist."""
    model = draw(st.sampled_from(models)) if draw(st.integers(0, 9)) else "nope"
    kind = draw(st.sampled_from(["v1", "v1", "v1", "v2", "v2", "get"]))
    if kind == "get":
        path = draw(
            st.sampled_from([f"/v1/models/{model}", f"/v2/models/{model}", f"/v2/models/{model}/ready"])
            | st.text(alphabet="abc/v12?=&%", max_size=20).map(lambda p: "/" + p)
        )
        return FuzzRequest("GET", path)
    if kind == "v2":
        version = draw(st.sampled_from(["", "", "/versions/1", "/versions/1", "/versions/2", "/versions/x"]))
        body, headers = draw(v2_bodies())
        return FuzzRequest("POST", f"/v2/models/{model}{version}/infer", body, headers)
    query = draw(
        st.sampled_from(["", "?top_k=0", "?top_k=abc", "?category=mug", "?category=7", "?return_probabilities=maybe"])
        | st.text(alphabet="abcdefgtopkcategory_=&%0123456789", max_size=24).map(lambda q: "?" + q)
    )
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    body = draw(
        st.one_of(json_predict_bodies(), binary_bodies(), npy_bodies(), multipart_bodies(), st.binary(max_size=300))
    )
    headers = {"content-type": content_type} if content_type else {}
    return FuzzRequest("POST", f"/v1/models/{model}/predict{query}", body, headers)
