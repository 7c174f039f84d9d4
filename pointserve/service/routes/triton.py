"""Triton's extensions of the Open Inference Protocol that Triton's tools need: model configuration, statistics
and the repository index (``perf_analyzer`` stops without the config; ``tritonclient`` calls all three).

* ``GET /v2/models/{m}[/versions/{v}]/config``: the model's Triton config in protobuf-JSON — the same description
  ``pointserve export-triton`` writes as ``config.pbtxt`` (:mod:`pointserve.repository.triton`), of the tensors
  clients exchange with pointserve (raw clouds in, logits out).
* ``GET /v2/models/stats``, ``GET /v2/models/{m}[/versions/{v}]/stats``: Triton's ``model_stats`` from the counters
  each served model keeps (:mod:`pointserve.service.core.statistics`).
* ``POST /v2/repository/index`` (body optional, ``{"ready": true}`` for ready models only): every served version
  with its state, every version loading, unloading, unloaded or failed (with the reason), and every model of the
  repository folder that is not loaded.
* ``POST /v2/repository/models/{m}/load`` (body optional: ``{"parameters": {"version": N}}``; else the pinned or
  latest version) and ``POST /v2/repository/models/{m}/unload``: Triton's explicit model control, on with
  ``model_control: explicit`` (a 400 that says so otherwise). 200 with an empty body on success, 400 with the
  reason for a failed load (the old version keeps serving). The switch itself is
  :mod:`pointserve.service.model_control`'s; these routes only read the request and answer.

These routes are included before :mod:`~pointserve.service.routes.oip`'s: ``/v2/models/stats`` must not be read
as the metadata of a model named "stats".
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from pointserve.errors import InputError
from pointserve.service.core.answers import check_flag
from pointserve.service.deps import Authorized, ControllerDep, ModelDep, ModelVersionDep, StateDep
from pointserve.service.model_control import check_unload_request, load_request_version
from pointserve.service.routes.common import json_response
from pointserve.service.schemas import (
    ERROR_RESPONSES,
    LOAD_BODY,
    REPOSITORY_INDEX_BODY,
    UNLOAD_BODY,
    RepositoryIndexEntry,
    TritonModelConfig,
    TritonStatistics,
)
from pointserve.service.served_model import ServedModel

router = APIRouter(prefix="/v2", tags=["v2 (Triton extensions)"], dependencies=[Authorized])
_STATS = {"response_model": TritonStatistics, "responses": ERROR_RESPONSES}
_CONFIG = {"response_model": TritonModelConfig, "responses": ERROR_RESPONSES}


def _statistics(models: list[ServedModel]) -> Response:
    return json_response({"model_stats": [m.statistics.triton(m.name, str(m.version)) for m in models]})


@router.get("/models/stats", summary="Statistics of every model (statistics extension)", **_STATS)
async def all_statistics(state: StateDep) -> Response:
    return _statistics([state.models[name] for name in sorted(state.models)])


@router.get("/models/{model}/stats", summary="Statistics of one model", **_STATS)
async def model_statistics(served: ModelDep) -> Response:
    return _statistics([served])


@router.get("/models/{model}/versions/{version}/stats", summary="Statistics (one version)", **_STATS)
async def model_version_statistics(served: ModelVersionDep) -> Response:
    return _statistics([served])


@router.get("/models/{model}/config", summary="Model configuration (Triton's JSON form)", **_CONFIG)
async def model_config(served: ModelDep) -> Response:
    return json_response(served.triton_config())


@router.get("/models/{model}/versions/{version}/config", summary="Model configuration (one version)", **_CONFIG)
async def model_version_config(served: ModelVersionDep) -> Response:
    return json_response(served.triton_config())


def _ready_only(body: bytes) -> bool:
    """The index request's options: nothing (``tritonclient`` sends an empty body) or ``{"ready": bool}``."""
    if not body.strip():
        return False
    try:
        options = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"malformed JSON in the repository index request: {exc}") from None
    if not isinstance(options, dict):
        raise InputError(f"the repository index request must be a JSON object, got {type(options).__name__}")
    unknown = sorted(set(options) - {"ready"})
    if unknown:
        raise InputError(f"unknown repository index option(s): {', '.join(unknown)} (the one option is ready)")
    return bool(check_flag(options.get("ready"), "ready"))


@router.post(
    "/repository/index",
    summary="Repository index (model repository extension): served, loading, failed and unloaded models",
    response_model=list[RepositoryIndexEntry],
    responses=ERROR_RESPONSES,
    openapi_extra={"requestBody": REPOSITORY_INDEX_BODY},
)
async def repository_index(request: Request, controller: ControllerDep) -> Response:
    return json_response(await controller.index(_ready_only(await request.body())))


_CONTROL = {
    "response_class": Response,
    "responses": {200: {"description": "done (empty body, as Triton answers)"}, **ERROR_RESPONSES},
}
ModelName = Annotated[str, Path(description="model name (a folder of the repository)")]


@router.post(
    "/repository/models/{model}/load",
    summary="Load or switch a model's version (explicit model control); the old version serves until then",
    openapi_extra={"requestBody": LOAD_BODY},
    **_CONTROL,
)
async def load_model(request: Request, controller: ControllerDep, model: ModelName) -> Response:
    controller.check_enabled("load")  # in mode none or poll the body does not matter
    version = load_request_version(await request.body())
    await controller.load(model, version)
    return Response(status_code=200)


@router.post(
    "/repository/models/{model}/unload",
    summary="Unload a model (explicit model control): its accepted requests finish, new ones get 404",
    openapi_extra={"requestBody": UNLOAD_BODY},
    **_CONTROL,
)
async def unload_model(request: Request, controller: ControllerDep, model: ModelName) -> Response:
    controller.check_enabled("unload")
    check_unload_request(await request.body())
    await controller.unload(model)
    return Response(status_code=200)
