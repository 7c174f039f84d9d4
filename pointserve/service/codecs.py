"""Decoding ``POST /v1/models/{model}/predict`` bodies, for every content type the endpoint takes.

* ``application/json``: ``{"points": [[x, y, z], ...], "category": ..., "top_k": 3, "return_probabilities": true}``
  or ``{"instances": [{"points": ..., "category": ...}, ...], ...}`` (answered as ``{"predictions": [...]}``);
* ``application/octet-stream``: little-endian float32, N x C, row after row;
* ``application/x-npy``: one ``.npy`` (N, C) array (never unpickled);
* ``multipart/form-data``: one or more files (``.ply`` ascii/binary, ``.pcd`` ascii/binary/binary_compressed,
  ``.xyz``, ``.txt``, ``.npy``, ``.las``, ``.laz``; the model's channels by name, see docs/serving.md) plus optional
  ``category`` / ``top_k`` / ``return_probabilities`` / ``return_logits`` / ``render`` fields.

With the binary and multipart forms the options come from the query string (``?category=mug&top_k=3``).
Numbers are parsed by orjson and converted by numpy in one call: no Python loop over points.

Every form ends in the same checks (:func:`~pointserve.service.core.clouds.check_points` for each cloud,
:func:`~pointserve.service.core.answers.check_top_k`, ``check_flag`` and ``check_category`` for the options), so
the same mistake gets the same status and the same reason whichever encoding carried it.
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
from pointserve.render import MATPLOTLIB_HINT, matplotlib_available
from pointserve.service.core.answers import check_flag, check_top_k
from pointserve.service.core.clouds import (
    EMPTY_CLOUD,
    FOUND_BOOLEANS,
    check_category,
    check_points,
    holds_booleans,
    not_numbers,
    option_value,
    refuse,
    shown,
    too_many_clouds,
    wrong_coordinates,
)

JSON_TYPES = ("application/json",)
BINARY_TYPES = ("application/octet-stream",)
NPY_TYPES = ("application/x-npy", "application/npy")
MULTIPART_TYPES = ("multipart/form-data",)
ACCEPTED = "application/json, application/octet-stream (float32 N x C), application/x-npy or multipart/form-data"
_OPTION_FIELDS = {"category", "top_k", "return_probabilities", "return_logits", "render"}
RENDER_FORMATS = ("png",)
NO_MATPLOTLIB = f"render=png needs matplotlib on the server ({MATPLOTLIB_HINT})"
_OFFLOAD_BYTES = 1 << 20  # parse uploads larger than this in a thread, off the event loop


@dataclass
class PredictOptions:
    top_k: int | None = None
    return_probabilities: bool = False
    return_logits: bool = False
    category: Any = None
    render: str | None = None  # "png": answer a picture of the (one) segmented cloud instead of JSON


@dataclass
class PredictInput:
    points: np.ndarray  # (N, C) float32, checked by check_points
    category: Any = None


@dataclass(frozen=True)
class CloudLimits:
    """What every cloud of a request must fit: the model's coordinates per point and points per cloud, and the
    clouds one request may hold."""

    channels: int
    min_points: int
    max_points: int
    max_instances: int

    def check(self, points: np.ndarray, where: str) -> np.ndarray:
        return check_points(
            points, channels=self.channels, min_points=self.min_points, max_points=self.max_points, where=where
        )


@dataclass
class DecodedPredict:
    """The clouds of one request; ``many`` when the client sent a list (answer with a list)."""

    inputs: list[PredictInput]
    many: bool = False
    options: PredictOptions = field(default_factory=PredictOptions)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def unknown_fields(names: set, place: str) -> InputError:
    """An unknown option, the same rule for the JSON body, the form and the query string."""
    listed = ", ".join(sorted(map(str, names)))[:200]
    return InputError(f"unknown {place}(s) {listed}; the options are {', '.join(sorted(_OPTION_FIELDS))}")


def apply_options(options: PredictOptions, values: dict[str, Any]) -> PredictOptions:
    """Options given in a body or form override those of the query string; each has one rule, whatever carried
    it (query and form text read as JSON: see :func:`~pointserve.service.core.clouds.option_value`)."""
    top_k = check_top_k(values.get("top_k"))
    if top_k is not None:
        options.top_k = top_k
    for name in ("return_probabilities", "return_logits"):
        flag = check_flag(values.get(name), name)
        if flag is not None:
            setattr(options, name, flag)
    category = check_category(values.get("category"))
    if category is not None:
        options.category = category
    render = check_render(values.get("render"))
    if render is not None:
        options.render = render
    return options


def check_render(value: Any, where: str = "render") -> str | None:
    """``render``'s one rule: absent, or ``"png"``; and a server without matplotlib refuses it (400, before any
    inference), saying what to install: the request asks for something this server was installed without."""
    value = option_value(value)
    if value is None:
        return None
    if value not in RENDER_FORMATS:
        raise InputError(f'{where} must be "png" (or absent for JSON), got {shown(value)}')
    if not matplotlib_available():
        raise InputError(NO_MATPLOTLIB)
    return value


def points_from_json(
    value: Any, limits: CloudLimits, where: str = "points", *, may_hold_booleans: bool = True
) -> np.ndarray:
    """A JSON list of points to a checked (N, C) float32 cloud; anything but a rectangular list of numbers is
    refused, with the rules of every other encoding.

    ``may_hold_booleans=False`` (the body has no ``true`` / ``false`` token) skips the scan for booleans.
    """
    if not isinstance(value, list):
        raise refuse(where, f"must be a list of points [[x, y, z], ...], got {type(value).__name__}")
    if not value:
        raise refuse(where, EMPTY_CLOUD)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        raise _ragged(value, limits.channels, where) from None
    if may_hold_booleans and array.dtype.kind in "fiub" and holds_booleans(value):
        raise refuse(where, not_numbers(FOUND_BOOLEANS))
    return limits.check(array, where)


def _ragged(points: list, channels: int, where: str) -> InputError:
    """The first point with the wrong number of coordinates (error path only: a Python look at each point)."""
    for i, point in enumerate(points):
        if isinstance(point, list) and len(point) != channels:
            return refuse(f"{where}[{i}]", wrong_coordinates(channels, len(point)))
    return refuse(where, "must be a list of points that all have the same number of coordinates")


def _decode_json(body: bytes, limits: CloudLimits, options: PredictOptions) -> DecodedPredict:
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
        raise unknown_fields(unknown, "field")
    apply_options(options, obj)
    booleans = b"true" in body or b"false" in body
    if ("points" in obj) == ("instances" in obj):
        raise InputError('the JSON body needs exactly one of "points" or "instances"')
    if "points" in obj:
        points = points_from_json(obj["points"], limits, may_hold_booleans=booleans)
        return DecodedPredict([PredictInput(points)], False, options)
    instances = obj["instances"]
    if not isinstance(instances, list):
        raise InputError('"instances" must be a non-empty list of {"points": ..., "category": ...} objects')
    if not 1 <= len(instances) <= limits.max_instances:
        raise refuse("instances", too_many_clouds(len(instances), limits.max_instances))
    inputs = []
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict) or "points" not in instance:
            raise InputError(f'instances[{i}] must be an object with "points"')
        extra = set(instance) - {"points", "category"}
        if extra:
            raise InputError(f"instances[{i}] has unknown field(s) {', '.join(sorted(extra))[:200]}")
        where = f"instances[{i}]"
        points = points_from_json(instance["points"], limits, f"{where}.points", may_hold_booleans=booleans)
        inputs.append(PredictInput(points, check_category(instance.get("category"), f"{where}.category")))
    return DecodedPredict(inputs, True, options)


def _decode_binary(body: bytes, limits: CloudLimits, options: PredictOptions) -> DecodedPredict:
    channels = limits.channels
    row_bytes = 4 * channels
    if len(body) % row_bytes:
        raise InputError(
            f"application/octet-stream body of {len(body)} bytes is not whole points: expected float32 N x {channels} "
            f"(a multiple of {row_bytes} bytes)"
        )
    points = np.frombuffer(body, dtype="<f4").reshape(-1, channels)
    return DecodedPredict([PredictInput(limits.check(points, "points"))], False, options)


# Files whose formats name their fields (or, for text, hold the pointserve layout x y z [normals] first, as
# ModelNet's normal_resampled .txt does) give the model's channels and ignore the rest (colours, intensity, ...).
# A .npy is an array, like the float32 and x-npy bodies: its shape is the client's word, so a wrong number of
# columns is refused, not cut.
_FILE_FORMATS_TAKE_CHANNELS = ("ply", "pcd", "xyz", "txt", "las", "laz", "bin", "pcd.bin")


def _read_and_check(data: bytes, fmt: str, filename: str, limits: CloudLimits, where: str) -> np.ndarray:
    # dtype=None keeps the file's precision (LAS coordinates are float64) so that the check sees the values as
    # sent before its float32 cast; values past float32 become inf there, refused by the check.
    channels = limits.channels if fmt in _FILE_FORMATS_TAKE_CHANNELS else None
    with np.errstate(over="ignore", invalid="ignore"):
        points = read_point_cloud_bytes(data, fmt, filename=filename, channels=channels, dtype=None)
    return limits.check(points, where)


async def _read_cloud_file(data: bytes, fmt: str, filename: str, limits: CloudLimits, where: str) -> np.ndarray:
    if len(data) > _OFFLOAD_BYTES:
        return await asyncio.to_thread(_read_and_check, data, fmt, filename, limits, where)
    return _read_and_check(data, fmt, filename, limits, where)


async def _decode_npy(body: bytes, limits: CloudLimits, options: PredictOptions) -> DecodedPredict:
    points = await _read_cloud_file(body, "npy", "request body", limits, "points")
    return DecodedPredict([PredictInput(points)], False, options)


# A file part whose name has no known extension is read by its Content-Type where that names a format (LAS/LAZ:
# IANA's types).
_FILE_TYPES = {**dict.fromkeys(NPY_TYPES, "npy"), "application/vnd.las": "las", "application/vnd.laszip": "laz"}


def _file_format(upload: UploadFile) -> str:
    name = upload.filename or ""
    kind = (upload.content_type or "").split(";", 1)[0].strip().lower()
    try:
        return format_from_name(name or "upload")
    except DataError as exc:
        if kind in _FILE_TYPES:
            return _FILE_TYPES[kind]
        raise UnsupportedMediaTypeError(str(exc)) from None


async def _decode_multipart(request: Request, limits: CloudLimits, options: PredictOptions) -> DecodedPredict:
    # One file more than the limit is read, so that a request of limit + 1 files meets the rule of the others.
    try:
        form = await request.form(max_files=limits.max_instances + 1, max_fields=16)
    except HTTPException as exc:  # starlette reports multipart parse errors this way
        if "Too many files" in str(exc.detail):
            more = f"more than {limits.max_instances + 1}"
            raise refuse("files", too_many_clouds(more, limits.max_instances)) from None
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
                raise unknown_fields({key[:64]}, "form field")
        if not files:
            raise InputError(
                "the multipart upload has no file: send the cloud as a file field (.ply .pcd .xyz .txt .npy .las .laz)"
            )
        if len(files) > limits.max_instances:
            raise refuse("files", too_many_clouds(len(files), limits.max_instances))
        apply_options(options, values)
        inputs = []
        for upload in files:
            fmt = _file_format(upload)
            data = await upload.read()
            name = upload.filename or "upload"
            inputs.append(PredictInput(await _read_cloud_file(data, fmt, name, limits, name)))
        return DecodedPredict(inputs, len(inputs) > 1, options)
    finally:
        await form.close()


def options_from_query(request: Request) -> PredictOptions:
    values = dict(request.query_params)
    unknown = set(values) - _OPTION_FIELDS
    if unknown:
        raise unknown_fields({name[:64] for name in unknown}, "query parameter")
    return apply_options(PredictOptions(), values)


async def decode_predict(request: Request, *, limits: CloudLimits) -> DecodedPredict:
    """Read and decode a predict body into checked float32 clouds; every failure is an InputError (400/413/415)
    naming the problem, with the same reason whatever the encoding."""
    kind = media_type(request)
    options = options_from_query(request)
    if kind in MULTIPART_TYPES:
        return await _decode_multipart(request, limits, options)
    if kind not in JSON_TYPES + BINARY_TYPES + NPY_TYPES:
        got = f"Content-Type {kind!r}" if kind else "no Content-Type"
        raise UnsupportedMediaTypeError(f"{got}; send {ACCEPTED}")
    body = await request.body()
    if kind in JSON_TYPES:
        if len(body) > _OFFLOAD_BYTES:
            return await asyncio.to_thread(_decode_json, body, limits, options)
        return _decode_json(body, limits, options)
    if kind in BINARY_TYPES:
        if len(body) > _OFFLOAD_BYTES:
            return await asyncio.to_thread(_decode_binary, body, limits, options)
        return _decode_binary(body, limits, options)
    return await _decode_npy(body, limits, options)
