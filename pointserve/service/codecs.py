"""Decoding ``POST /v1/models/{model}/predict`` bodies, for every content type the endpoint takes.

* ``application/json``: ``{"points": [[x, y, z], ...], "category": ..., "top_k": 3, "return_probabilities": true}``
  or ``{"instances": [{"points": ..., "category": ...}, ...], ...}`` (answered as ``{"predictions": [...]}``);
* ``application/octet-stream``: little-endian float32, N x C, row after row;
* ``application/x-npy``: one ``.npy`` (N, C) array (never unpickled);
* ``multipart/form-data``: one or more files (``.ply`` ascii/binary, ``.pcd`` ascii/binary, ``.xyz``,
  ``.txt``, ``.npy``) plus optional ``category`` / ``top_k`` / ``return_probabilities`` / ``return_logits`` fields.

With the binary and multipart forms the options come from the query string (``?category=mug&top_k=3``).
Numbers are parsed by orjson and converted by numpy in one call: no Python loop over points.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from pointserve.data.formats import format_from_name, read_point_cloud_bytes
from pointserve.errors import DataError, InputError, UnsupportedMediaTypeError
from pointserve.service.core.answers import check_top_k

JSON_TYPES = ("application/json",)
BINARY_TYPES = ("application/octet-stream",)
NPY_TYPES = ("application/x-npy", "application/npy")
MULTIPART_TYPES = ("multipart/form-data",)
ACCEPTED = "application/json, application/octet-stream (float32 N x C), application/x-npy or multipart/form-data"
_OPTION_FIELDS = {"category", "top_k", "return_probabilities", "return_logits"}
_OFFLOAD_BYTES = 1 << 20  # parse uploads larger than this in a thread, off the event loop
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


@dataclass
class PredictOptions:
    top_k: int | None = None
    return_probabilities: bool = False
    return_logits: bool = False
    category: Any = None


@dataclass
class PredictInput:
    points: np.ndarray
    category: Any = None


@dataclass
class DecodedPredict:
    """The clouds of one request; ``many`` when the client sent a list (answer with a list)."""

    inputs: list[PredictInput]
    many: bool = False
    options: PredictOptions = field(default_factory=PredictOptions)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def parse_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InputError(f"{name} must be true or false, got {str(value)[:32]!r}")


def apply_options(options: PredictOptions, values: dict[str, Any]) -> PredictOptions:
    """Options given in a body or form override those of the query string."""
    if values.get("top_k") is not None:
        options.top_k = check_top_k(values["top_k"])
    if values.get("return_probabilities") is not None:
        options.return_probabilities = parse_bool(values["return_probabilities"], "return_probabilities")
    if values.get("return_logits") is not None:
        options.return_logits = parse_bool(values["return_logits"], "return_logits")
    if values.get("category") is not None:
        options.category = values["category"]
    return options


def points_from_json(value: Any, where: str = "points", *, may_hold_booleans: bool = True) -> np.ndarray:
    """A JSON list of points to an (N, C) array; anything but a rectangular list of numbers is refused.

    ``may_hold_booleans=False`` (the body has no ``true`` / ``false`` token) skips the per-value scan for
    booleans, which costs about as much as the conversion itself (34 vs 46 ms for 100k points).
    """
    if not isinstance(value, list):
        raise InputError(f"{where} must be a list of points [[x, y, z], ...], got {type(value).__name__}")
    if not value:
        raise InputError(f"the point cloud is empty ({where} has no points)")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        raise InputError(f"{where} must be a list of points that all have the same number of coordinates") from None
    if array.dtype.kind not in "fiu" or (may_hold_booleans and _has_bool(value)):
        kind = "'b'" if array.dtype.kind in "fiub" else repr(array.dtype.kind)
        raise InputError(f"{where} must contain only numbers (found {kind}-kind values)")
    return array


def _has_bool(points: list) -> bool:
    """numpy silently turns ``true`` into 1 when it sits next to numbers; a boolean is never a coordinate."""
    return any(type(c) is bool for p in points if isinstance(p, list) for c in p)


def _decode_json(body: bytes, max_instances: int, options: PredictOptions) -> DecodedPredict:
    if not body:
        raise InputError("empty body: send a JSON object with points")
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InputError('the JSON body must be an object: {"points": [[x, y, z], ...]} or {"instances": [...]}')
    unknown = set(obj) - _OPTION_FIELDS - {"points", "instances"}
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(sorted(map(str, unknown)))[:200]}")
    apply_options(options, obj)
    booleans = b"true" in body or b"false" in body
    if ("points" in obj) == ("instances" in obj):
        raise InputError('the JSON body needs exactly one of "points" or "instances"')
    if "points" in obj:
        return DecodedPredict(
            [PredictInput(points_from_json(obj["points"], may_hold_booleans=booleans))], False, options
        )
    instances = obj["instances"]
    if not isinstance(instances, list) or not instances:
        raise InputError('"instances" must be a non-empty list of {"points": ..., "category": ...} objects')
    if len(instances) > max_instances:
        raise InputError(f"{len(instances)} instances in one request; the limit is {max_instances}")
    inputs = []
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict) or "points" not in instance:
            raise InputError(f'instances[{i}] must be an object with "points"')
        extra = set(instance) - {"points", "category"}
        if extra:
            raise InputError(f"instances[{i}] has unknown field(s) {', '.join(sorted(extra))[:200]}")
        inputs.append(
            PredictInput(
                points_from_json(instance["points"], f"instances[{i}].points", may_hold_booleans=booleans),
                instance.get("category"),
            )
        )
    return DecodedPredict(inputs, True, options)


def _decode_binary(body: bytes, channels: int, options: PredictOptions) -> DecodedPredict:
    row_bytes = 4 * channels
    if len(body) % row_bytes:
        raise InputError(
            f"application/octet-stream body of {len(body)} bytes is not whole points: expected float32 N x {channels} "
            f"(a multiple of {row_bytes} bytes)"
        )
    points = np.frombuffer(body, dtype="<f4").reshape(-1, channels)
    return DecodedPredict([PredictInput(points)], False, options)


async def _read_cloud_file(data: bytes, fmt: str, filename: str) -> np.ndarray:
    # channels=None keeps every numeric column, so a wrong number of coordinates is refused, not cut.
    if len(data) > _OFFLOAD_BYTES:
        return await asyncio.to_thread(read_point_cloud_bytes, data, fmt, filename=filename, channels=None)
    return read_point_cloud_bytes(data, fmt, filename=filename, channels=None)


async def _decode_npy(body: bytes, options: PredictOptions) -> DecodedPredict:
    return DecodedPredict([PredictInput(await _read_cloud_file(body, "npy", "request body"))], False, options)


def _file_format(upload: UploadFile) -> str:
    name = upload.filename or ""
    if not name and (upload.content_type or "").lower() in NPY_TYPES:
        return "npy"
    try:
        return format_from_name(name or "upload")
    except DataError as exc:
        raise UnsupportedMediaTypeError(str(exc)) from None


async def _decode_multipart(
    request: Request, channels: int, max_instances: int, options: PredictOptions
) -> DecodedPredict:
    try:
        form = await request.form(max_files=max_instances, max_fields=16)
    except HTTPException as exc:  # starlette reports multipart parse errors this way
        raise InputError(f"malformed multipart body: {exc.detail}") from None
    except (ValueError, KeyError, AssertionError) as exc:
        raise InputError(f"malformed multipart body: {exc}") from None
    try:
        files: list[UploadFile] = []
        values: dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append(value)
            elif key in _OPTION_FIELDS:
                values[key] = value
            else:
                raise InputError(
                    f"unknown form field {key[:64]!r}; send files plus any of {', '.join(sorted(_OPTION_FIELDS))}"
                )
        if not files:
            raise InputError(
                "the multipart upload has no file: send the cloud as a file field (.ply .pcd .xyz .txt .npy)"
            )
        apply_options(options, values)
        inputs = []
        for upload in files:
            fmt = _file_format(upload)
            data = await upload.read()
            inputs.append(PredictInput(await _read_cloud_file(data, fmt, upload.filename or "upload")))
        return DecodedPredict(inputs, len(inputs) > 1, options)
    finally:
        await form.close()


def options_from_query(request: Request) -> PredictOptions:
    return apply_options(PredictOptions(), dict(request.query_params))


async def decode_predict(request: Request, *, channels: int, max_instances: int) -> DecodedPredict:
    """Read and decode a predict body; every failure is an InputError (400/413/415) naming the problem."""
    kind = media_type(request)
    options = options_from_query(request)
    if kind in MULTIPART_TYPES:
        return await _decode_multipart(request, channels, max_instances, options)
    if kind not in JSON_TYPES + BINARY_TYPES + NPY_TYPES:
        got = f"Content-Type {kind!r}" if kind else "no Content-Type"
        raise UnsupportedMediaTypeError(f"{got}; send {ACCEPTED}")
    body = await request.body()
    if kind in JSON_TYPES:
        if len(body) > _OFFLOAD_BYTES:
            return await asyncio.to_thread(_decode_json, body, max_instances, options)
        return _decode_json(body, max_instances, options)
    if kind in BINARY_TYPES:
        return _decode_binary(body, channels, options)
    return await _decode_npy(body, options)
