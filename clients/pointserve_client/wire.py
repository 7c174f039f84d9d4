"""Requests and answers on the wire, shared by the sync and async clients (no I/O here).

Encodings of ``/v1/models/{model}/predict``:
    "binary": application/octet-stream, little-endian float32, N x C, row after row (the fastest)
    "json":   {"points": [[x, y, z], ...]} (or {"instances": [...]} for several clouds)
    "npy":    application/x-npy, one (N, C) .npy
    files:    multipart/form-data upload of .ply / .pcd / .xyz / .txt / .npy / .las / .laz
Open Inference Protocol (``/v2/models/{model}/infer``): JSON tensors, or the binary tensor data extension
(a JSON header of ``Inference-Header-Content-Length`` bytes, then the raw tensors).

Shapes:
    points: (N, C) for predict, (B, N, C) for infer; category: (B,) int64 for infer
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from .results import InferResult, PointServeHTTPError, Result, result_from_json

ENCODINGS = ("binary", "json", "npy")
HEADER_LENGTH = "Inference-Header-Content-Length"
_V2_DATATYPES = {np.dtype("float32"): "FP32", np.dtype("float16"): "FP16", np.dtype("int64"): "INT64"}
_V2_NUMPY = {"FP32": "<f4", "FP16": "<f2", "FP64": "<f8", "INT64": "<i8", "INT32": "<i4"}


@dataclass
class RequestSpec:
    """What to send: everything ``httpx.Client.request`` needs."""

    method: str
    path: str
    content: bytes | None = None
    files: Any = None
    data: dict[str, str] | None = None
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def kwargs(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "files": self.files,
            "data": self.data,
            "params": self.params or None,
            "headers": self.headers or None,
        }


def _points(points: Any) -> np.ndarray:
    array = np.asarray(points, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"points must be (N, C), got shape {array.shape}")
    return np.ascontiguousarray(array)


def _options(top_k: int | None, return_probabilities: bool, return_logits: bool, category: Any) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if top_k is not None:
        options["top_k"] = int(top_k)
    if return_probabilities:
        options["return_probabilities"] = True
    if return_logits:
        options["return_logits"] = True
    if category is not None:
        options["category"] = category if isinstance(category, str) else int(category)
    return options


def _as_query(options: Mapping[str, Any]) -> dict[str, str]:
    return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in options.items()}


def predict_request(
    model: str,
    points: Any,
    *,
    encoding: str = "binary",
    category: str | int | None = None,
    top_k: int | None = None,
    return_probabilities: bool = False,
    return_logits: bool = False,
) -> RequestSpec:
    """One cloud (N, C) of raw coordinates (the server normalises them)."""
    cloud = _points(points)
    options = _options(top_k, return_probabilities, return_logits, category)
    path = f"/v1/models/{model}/predict"
    if encoding == "binary":
        headers = {"content-type": "application/octet-stream"}
        return RequestSpec("POST", path, cloud.astype("<f4").tobytes(), params=_as_query(options), headers=headers)
    if encoding == "npy":
        buffer = io.BytesIO()
        np.save(buffer, cloud, allow_pickle=False)
        headers = {"content-type": "application/x-npy"}
        return RequestSpec("POST", path, buffer.getvalue(), params=_as_query(options), headers=headers)
    if encoding == "json":
        body = json.dumps({"points": cloud.tolist(), **options}, separators=(",", ":")).encode()
        return RequestSpec("POST", path, body, headers={"content-type": "application/json"})
    raise ValueError(f"unknown encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")


def predict_many_request(
    model: str,
    clouds: Sequence[Any],
    *,
    categories: Sequence[str | int | None] | None = None,
    top_k: int | None = None,
    return_probabilities: bool = False,
    return_logits: bool = False,
) -> RequestSpec:
    """Several clouds in one JSON request (``{"instances": [...]}``); answered in the same order."""
    if categories is not None and len(categories) != len(clouds):
        raise ValueError(f"{len(categories)} categories for {len(clouds)} clouds")
    instances = []
    for i, cloud in enumerate(clouds):
        instance: dict[str, Any] = {"points": _points(cloud).tolist()}
        if categories is not None and categories[i] is not None:
            instance["category"] = categories[i]
        instances.append(instance)
    body = {"instances": instances, **_options(top_k, return_probabilities, return_logits, None)}
    content = json.dumps(body, separators=(",", ":")).encode()
    return RequestSpec("POST", f"/v1/models/{model}/predict", content, headers={"content-type": "application/json"})


def predict_file_request(
    model: str,
    files: str | os.PathLike | bytes | Sequence[str | os.PathLike],
    *,
    filename: str | None = None,
    category: str | int | None = None,
    top_k: int | None = None,
    return_probabilities: bool = False,
    return_logits: bool = False,
) -> RequestSpec:
    """Upload point-cloud files (multipart); bytes need ``filename`` for their format (``"cloud.ply"``)."""
    if isinstance(files, (bytes, bytearray)):
        if not filename:
            raise ValueError("uploading bytes needs filename= (its extension tells the format)")
        parts = [("file", (filename, bytes(files), "application/octet-stream"))]
    else:
        paths = [files] if isinstance(files, (str, os.PathLike)) else list(files)
        parts = [("file", (Path(p).name, Path(p).read_bytes(), "application/octet-stream")) for p in paths]
    options = _options(top_k, return_probabilities, return_logits, category)
    return RequestSpec("POST", f"/v1/models/{model}/predict", files=parts, data=_as_query(options) or None)


def infer_request(
    model: str,
    inputs: Mapping[str, np.ndarray],
    *,
    outputs: Sequence[str] = (),
    binary: bool = True,
    version: str | int | None = None,
    request_id: str | None = None,
) -> RequestSpec:
    """An Open Inference Protocol infer request; ``binary`` uses the binary tensor data extension both ways."""
    tensors, chunks = [], []
    for name, value in inputs.items():
        array = np.ascontiguousarray(value)
        if array.dtype not in _V2_DATATYPES:
            array = array.astype(np.float32 if array.dtype.kind == "f" else np.int64)
        tensor: dict[str, Any] = {"name": name, "datatype": _V2_DATATYPES[array.dtype], "shape": list(array.shape)}
        if binary:
            raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = array.ravel().tolist()
        tensors.append(tensor)
    request: dict[str, Any] = {"inputs": tensors}
    if request_id is not None:
        request["id"] = request_id
    if outputs:
        request["outputs"] = [{"name": o, "parameters": {"binary_data": binary}} for o in outputs]
    elif binary:
        request["parameters"] = {"binary_data_output": True}
    header = json.dumps(request, separators=(",", ":")).encode()
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version is not None else "") + "/infer"
    if not binary:
        return RequestSpec("POST", path, header, headers={"content-type": "application/json"})
    headers = {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return RequestSpec("POST", path, header + b"".join(chunks), headers=headers)


def render_request(model: str, points: Any, *, category: str | int | None = None) -> RequestSpec:
    """One cloud as float32 bytes with ``render=png``: the answer is a PNG, not JSON."""
    spec = predict_request(model, points, category=category)
    return replace(spec, params={**spec.params, "render": "png"})


def check(response: httpx.Response) -> httpx.Response:
    """Raise :class:`PointServeHTTPError` with the server's error text for any non-2xx answer."""
    if response.is_success:
        return response
    try:
        message = str(response.json().get("error", response.text))
    except (ValueError, AttributeError):
        message = response.text[:500] or response.reason_phrase
    retry = response.headers.get("retry-after")
    raise PointServeHTTPError(
        response.status_code,
        message,
        request_id=response.headers.get("x-request-id"),
        retry_after_s=float(retry) if retry and retry.replace(".", "", 1).isdigit() else None,
    )


def parse_predict(response: httpx.Response) -> Result | list[Result]:
    data = check(response).json()
    request_id = response.headers.get("x-request-id")
    if "predictions" in data:
        head = {"model": data["model"], "version": data["version"]}
        return [result_from_json({**head, **item}, request_id) for item in data["predictions"]]
    return result_from_json(data, request_id)


def parse_infer(response: httpx.Response) -> InferResult:
    check(response)
    body = response.content
    header_length = response.headers.get(HEADER_LENGTH)
    json_size = int(header_length) if header_length is not None else len(body)
    header = json.loads(body[:json_size])
    offset = json_size
    outputs: dict[str, np.ndarray] = {}
    for tensor in header.get("outputs", []):
        dtype = np.dtype(_V2_NUMPY[tensor["datatype"]])
        shape = tuple(tensor["shape"])
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            outputs[tensor["name"]] = np.frombuffer(body[offset : offset + size], dtype=dtype).reshape(shape).copy()
            offset += size
        else:
            outputs[tensor["name"]] = np.asarray(tensor["data"], dtype=dtype).reshape(shape)
    return InferResult(header.get("model_name", ""), str(header.get("model_version", "")), outputs, header.get("id"))


__all__ = [
    "ENCODINGS",
    "RequestSpec",
    "check",
    "infer_request",
    "parse_infer",
    "parse_predict",
    "predict_file_request",
    "predict_many_request",
    "predict_request",
]
