"""Open Inference Protocol (KServe v2, what Triton speaks): server and model metadata, readiness, infer.

Inputs are the request tensors of every family — ``points`` (B, N, C) FP32 raw coordinates (the server
normalises and runs the family's preprocessor, as for /v1) and, for part segmentation, ``category`` INT64 with
one id per cloud ((B, 1) as the metadata says, Triton's form; (B,) is taken too) — and the output is ``logits``:
(B, K), or (B, N, P) with a row for every input point. Each cloud of B joins the model's dynamic batcher on its
own and goes through the same ``ServedModel.predict`` as /v1. An infer answer is compressed (gzip or deflate)
when the request's ``Accept-Encoding`` asks for it; compressed requests are inflated by the middleware.
Triton's config, statistics and repository index are in :mod:`~pointserve.service.routes.triton`.
"""

from __future__ import annotations

import asyncio

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from pointserve import __version__
from pointserve.errors import InputError
from pointserve.models.spec import request_specs
from pointserve.repository.triton import metadata_shape
from pointserve.service.codecs_v2 import HEADER_LENGTH, decode_infer_request, encode_infer_response
from pointserve.service.compression import compress, response_encoding
from pointserve.service.core.answers import full_logits
from pointserve.service.core.clouds import check_category, check_points, refuse, too_many_clouds
from pointserve.service.deps import Authorized, ModelDep, ModelVersionDep, ServedModelDep, ServedVersionDep
from pointserve.service.routes.common import (
    CLIENT_CLOSED_REQUEST,
    ClientDisconnected,
    json_response,
    unless_disconnected,
)
from pointserve.service.schemas import (
    ERROR_RESPONSES,
    INFER_REQUEST_BODY,
    InferResponse,
    ModelMetadata,
    ModelReady,
    ServerMetadata,
)
from pointserve.service.served_model import ServedModel

router = APIRouter(prefix="/v2", tags=["v2 (Open Inference Protocol)"], dependencies=[Authorized])
# Triton's names: the binary tensor data extension, the statistics extension (GET /v2/models[/{m}]/stats) and
# the repository index of the model repository extension (no load / unload).
EXTENSIONS = ["binary_tensor_data", "statistics", "model_repository"]
# Answers below this are sent as they are even when the client accepts gzip (httpx, aiohttp and requests ask for
# it by default): a classification's few logits gain nothing. Bigger ones than THREAD_... compress off the loop.
MIN_COMPRESS_BYTES = 1024
THREAD_COMPRESS_BYTES = 1 << 20


@router.get("", summary="Server metadata", response_model=ServerMetadata)
async def server_metadata() -> Response:
    return json_response({"name": "pointserve", "version": __version__, "extensions": EXTENSIONS})


def _metadata(served: ServedModel) -> dict:
    """What a client sends and gets (the request tensors: raw clouds in, logits out), whatever the family
    computes on the server in between: read from the model's Triton config (``GET .../config``), so the two
    agree, with the batch dimension (-1) first as Triton's metadata has it."""
    config = served.triton_config()

    def tensors(entries: list[dict]) -> list[dict]:
        return [
            {
                "name": t["name"],
                "datatype": t["data_type"].removeprefix("TYPE_"),
                "shape": metadata_shape(t, config["max_batch_size"]),
            }
            for t in entries
        ]

    return {
        "name": served.name,
        "versions": [str(served.version)],
        "platform": config["platform"],
        "inputs": tensors(config["input"]),
        "outputs": tensors(config["output"]),
    }


@router.get("/models/{model}", summary="Model metadata", response_model=ModelMetadata, responses=ERROR_RESPONSES)
async def model_metadata(served: ServedModelDep) -> Response:
    return json_response(_metadata(served))


@router.get(
    "/models/{model}/versions/{version}",
    summary="Model metadata (one version)",
    response_model=ModelMetadata,
    responses=ERROR_RESPONSES,
)
async def model_version_metadata(served: ServedVersionDep) -> Response:
    return json_response(_metadata(served))


def _readiness(served: ServedModel) -> Response:
    ready = served.state == "ready"
    body = {"name": served.name, "ready": ready}
    return json_response(body if ready else {**body, "error": f"model is {served.state}"}, 200 if ready else 503)


@router.get("/models/{model}/ready", summary="Model readiness", response_model=ModelReady, responses=ERROR_RESPONSES)
async def model_ready(served: ModelDep) -> Response:
    return _readiness(served)


@router.get(
    "/models/{model}/versions/{version}/ready",
    summary="Model readiness (one version)",
    response_model=ModelReady,
    responses=ERROR_RESPONSES,
)
async def model_version_ready(served: ModelVersionDep) -> Response:
    return _readiness(served)


async def _infer(request: Request, served: ServedModel, max_instances: int) -> Response:
    body = await request.body()
    infer = decode_infer_request(body, request.headers.get(HEADER_LENGTH))
    request_inputs, request_outputs = request_specs(served.card)
    points_name = request_inputs[0].name
    category_name = request_inputs[1].name if len(request_inputs) > 1 else None
    unknown = set(infer.inputs) - {points_name, category_name}
    if unknown:
        raise InputError(
            f"unknown input(s) {', '.join(sorted(unknown))}; model {served.name!r} takes {points_name}"
            + (f" and {category_name}" if category_name else "")
        )
    points = infer.inputs.get(points_name)
    if points is None:
        raise InputError(f"missing input {points_name!r} (B, N, {served.channels}) FP32")
    if points.ndim != 3:
        raise InputError(
            f"{points_name} must be a (B, N, {served.channels}) tensor of clouds, got shape {list(points.shape)}"
        )
    where = f"input {points_name!r}"
    if not 1 <= len(points) <= max_instances:
        raise refuse(where, too_many_clouds(len(points), max_instances))
    # The rules of every /v1 encoding, cloud by cloud (what the tensor's datatype carried is checked, not trusted).
    limits = {"channels": served.channels, "min_points": served.min_points, "max_points": served.max_points}
    checked = [check_points(cloud, **limits, where=f"{where}[{b}]") for b, cloud in enumerate(points)]
    categories: list = [None] * len(points)
    if category_name is not None and category_name in infer.inputs:
        category = infer.inputs[category_name]
        if category.size != len(points):
            raise InputError(f"{category_name} must be an integer tensor with one id per cloud ({len(points)})")
        ids = category.reshape(-1).tolist()
        categories = [check_category(c, f"input {category_name!r}[{b}]") for b, c in enumerate(ids)]
    try:
        clouds, logits = await unless_disconnected(request, served.predict(list(zip(checked, categories, strict=True))))
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    output_name = request_outputs[0].name
    stacked = np.stack([full_logits(item, cloud) for item, cloud in zip(logits, clouds, strict=True)])
    wanted = infer.outputs if infer.outputs is not None else None
    if wanted is None:
        outputs = [(output_name, stacked, infer.binary_output)]
    else:
        unknown_outputs = [o.name for o in wanted if o.name != output_name]
        if unknown_outputs:
            raise InputError(f"unknown output(s) {', '.join(unknown_outputs)}; model {served.name!r} has {output_name}")
        outputs = [(o.name, stacked, o.binary) for o in wanted]
    content, headers, media_type = encode_infer_response(
        model_name=served.name, model_version=str(served.version), request_id=infer.id, outputs=outputs
    )
    encoding = response_encoding(request.headers.get("accept-encoding")) if len(content) >= MIN_COMPRESS_BYTES else None
    if encoding is not None:  # Inference-Header-Content-Length stays the uncompressed header's size (Triton's rule)
        if len(content) > THREAD_COMPRESS_BYTES:
            content = await asyncio.to_thread(compress, content, encoding)
        else:
            content = compress(content, encoding)
        headers = {**headers, "Content-Encoding": encoding, "Vary": "Accept-Encoding"}
    return Response(content, media_type=media_type, headers=headers)


_INFER = {
    "response_model": InferResponse,
    "responses": ERROR_RESPONSES,
    "openapi_extra": {"requestBody": INFER_REQUEST_BODY},
}


@router.post("/models/{model}/infer", summary="Inference (JSON or binary tensors)", **_INFER)
async def infer(request: Request, served: ServedModelDep) -> Response:
    return await _infer(request, served, request.app.state.service.settings.max_instances_per_request)


@router.post("/models/{model}/versions/{version}/infer", summary="Inference (one version)", **_INFER)
async def infer_version(request: Request, served: ServedVersionDep) -> Response:
    return await _infer(request, served, request.app.state.service.settings.max_instances_per_request)
