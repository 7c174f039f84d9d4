"""Open Inference Protocol (KServe v2) tensors: JSON ``data`` and the binary tensor data extension.

A binary request is a JSON header of ``Inference-Header-Content-Length`` bytes followed by the raw tensors,
in the order of the inputs whose ``parameters.binary_data_size`` says how many bytes they take. Outputs are
answered in binary when the output asks for ``parameters.binary_data`` or the request for
``parameters.binary_data_output`` (what ``tritonclient.http`` does by default), else as JSON ``data``.

Shapes: tensors are row-major; JSON ``data`` is the flattened (or nested) list of their elements.

What a tensor means (coordinates, category ids) is the route's to check, with the rules every /v1 encoding
meets (:mod:`pointserve.service.core.clouds`); here only the encoding is checked, and the parameters' flags
with the same rule as /v1's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from pointserve.errors import InputError
from pointserve.service.core.answers import check_flag
from pointserve.service.core.clouds import found_in, holds_booleans, not_numbers, refuse

HEADER_LENGTH = "Inference-Header-Content-Length"
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
DATATYPE_OF = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}
MAX_RANK = 8


@dataclass
class RequestedOutput:
    name: str
    binary: bool


@dataclass
class InferRequest:
    """A decoded infer request: its tensors by name, and which outputs to send back, how.

    A numeric tensor whose JSON ``data`` holds booleans comes back as an object array of the values as sent
    (numpy would have made each ``true`` a 1): the route refuses it with the rule for what the tensor means.
    """

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[RequestedOutput] | None
    binary_output: bool


def _object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise InputError(f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def _bool_parameter(parameters: dict, key: str, where: str) -> bool | None:
    return check_flag(parameters.get(key), f"{where}.parameters.{key}")


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > MAX_RANK:
        raise InputError(f"{where}.shape must be a list of at most {MAX_RANK} dimensions")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise InputError(f"{where}.shape must hold non-negative integers, got {str(value)[:80]}")
    return tuple(value)


def _json_tensor(
    data: Any, dtype: np.dtype, shape: tuple[int, ...], where: str, *, may_hold_booleans: bool
) -> np.ndarray:
    if not isinstance(data, list):
        raise InputError(f"{where}.data must be a list of numbers")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise InputError(f"{where}.data must be a (flat or rectangular) list of numbers") from None
    if array.size != math.prod(shape):
        raise InputError(f"{where}.data has {array.size} elements but shape {list(shape)} needs {math.prod(shape)}")
    if dtype.kind != "b" and (array.dtype.kind == "b" or (may_hold_booleans and holds_booleans(data))):
        return np.asarray(data, dtype=object).reshape(shape)  # refused by the route, as what the tensor means
    if array.size and array.dtype.kind not in "biuf":
        raise refuse(f"{where}.data", not_numbers(found_in(array)))
    with np.errstate(over="ignore", invalid="ignore"):
        return array.astype(dtype).reshape(shape)


def decode_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """Parse an infer request (JSON, or JSON header + binary tensors); InputError naming any problem."""
    if header_length is not None:
        try:
            json_size = int(header_length)
        except ValueError:
            raise InputError(f"{HEADER_LENGTH} must be an integer, got {header_length[:32]!r}") from None
        if not 0 < json_size <= len(body):
            raise InputError(f"{HEADER_LENGTH} {json_size} is outside the body of {len(body)} bytes")
    else:
        json_size = len(body)
    if not body:
        raise InputError('empty body: send an inference request {"inputs": [...]}')
    try:
        request = orjson.loads(memoryview(body)[:json_size])
    except orjson.JSONDecodeError as exc:
        raise InputError(f"malformed JSON in the inference request header: {exc}") from None
    request = _object(request, "the inference request")
    booleans = body.find(b"true", 0, json_size) >= 0 or body.find(b"false", 0, json_size) >= 0
    binary = memoryview(body)[json_size:]
    parameters = _object(request.get("parameters") or {}, "parameters")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InputError("id must be a string")
    raw_inputs = request.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InputError('"inputs" must be a non-empty list of tensors')
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for i, raw in enumerate(raw_inputs):
        where = f"inputs[{i}]"
        raw = _object(raw, where)
        name, datatype = raw.get("name"), raw.get("datatype")
        if not isinstance(name, str) or not name:
            raise InputError(f"{where}.name must be a non-empty string")
        if name in inputs:
            raise InputError(f"input {name!r} is given twice")
        if datatype not in DATATYPES:
            raise InputError(f"{where}.datatype {str(datatype)[:16]!r} is not supported (use {', '.join(DATATYPES)})")
        dtype, shape = DATATYPES[datatype], _shape(raw.get("shape"), where)
        tensor_parameters = _object(raw.get("parameters") or {}, f"{where}.parameters")
        size = tensor_parameters.get("binary_data_size")
        if size is not None:
            if "data" in raw:
                raise InputError(f"{where} has both data and parameters.binary_data_size")
            expected = math.prod(shape) * dtype.itemsize
            if not isinstance(size, int) or isinstance(size, bool) or size != expected:
                raise InputError(f"{where}: binary_data_size {size} does not match shape {list(shape)} of {datatype}")
            if offset + size > len(binary):
                raise InputError(f"{where}: binary data ends after {len(binary) - offset} of {size} bytes")
            inputs[name] = np.frombuffer(binary[offset : offset + size], dtype=dtype).reshape(shape)
            offset += size
        elif "data" in raw:
            inputs[name] = _json_tensor(raw["data"], dtype, shape, where, may_hold_booleans=booleans)
        else:
            raise InputError(f"{where} ({name}) has neither data nor parameters.binary_data_size")
    if offset != len(binary):
        raise InputError(f"{len(binary) - offset} bytes of binary data after the last binary input")
    binary_output = bool(_bool_parameter(parameters, "binary_data_output", "request"))
    outputs = None
    if request.get("outputs") is not None:
        if not isinstance(request["outputs"], list):
            raise InputError('"outputs" must be a list')
        outputs = []
        for i, raw in enumerate(request["outputs"]):
            raw = _object(raw, f"outputs[{i}]")
            if not isinstance(raw.get("name"), str):
                raise InputError(f"outputs[{i}].name must be a string")
            out_parameters = _object(raw.get("parameters") or {}, f"outputs[{i}].parameters")
            if out_parameters.get("classification"):
                raise InputError("the classification extension is not supported; ask for logits")
            flag = _bool_parameter(out_parameters, "binary_data", f"outputs[{i}]")
            outputs.append(RequestedOutput(raw["name"], binary_output if flag is None else flag))
    return InferRequest(request_id, inputs, outputs, binary_output)


def encode_infer_response(
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: list[tuple[str, np.ndarray, bool]],
) -> tuple[bytes, dict[str, str], str]:
    """Body, extra headers and media type of an infer response; ``outputs`` = (name, array, binary)."""
    tensors, chunks = [], []
    for name, array, binary in outputs:
        array = np.ascontiguousarray(array)
        tensor: dict[str, Any] = {"name": name, "datatype": DATATYPE_OF[array.dtype], "shape": list(array.shape)}
        if binary:
            data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            tensor["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            tensor["data"] = array.ravel()
        tensors.append(tensor)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": tensors}
    if request_id is not None:
        response["id"] = request_id
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, {}, "application/json"
    return header + b"".join(chunks), {HEADER_LENGTH: str(len(header))}, "application/octet-stream"
