"""Triton's extensions of the Open Inference Protocol that Triton's tools need: model configuration, statistics
and the repository index (``perf_analyzer`` stops without the config; ``tritonclient`` calls all three).

* ``GET /v2/models/{m}[/versions/{v}]/config``: the model's Triton config in protobuf-JSON — the same description
  ``pointserve export-triton`` writes as ``config.pbtxt`` (:mod:`pointserve.repository.triton`), of the tensors
  clients exchange with pointserve (raw clouds in, logits out).
* ``GET /v2/models/stats``, ``GET /v2/models/{m}[/versions/{v}]/stats``: Triton's ``model_stats`` from the counters
  each served model keeps (:mod:`pointserve.service.core.statistics`).
* ``POST /v2/repository/index`` (body optional, ``{"ready": true}`` for ready models only): every model of the
  repository with its state. Loading and unloading are not offered: models load at start-up.

These routes are included before :mod:`~pointserve.service.routes.oip`'s: ``/v2/models/stats`` must not be read
as the metadata of a model named "stats".
"""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from pointserve.errors import InputError
from pointserve.repository.store import Repository
from pointserve.service.core.answers import check_flag
from pointserve.service.deps import Authorized, ModelDep, ModelVersionDep, StateDep
from pointserve.service.routes.common import json_response
from pointserve.service.schemas import (
    ERROR_RESPONSES,
    REPOSITORY_INDEX_BODY,
    RepositoryIndexEntry,
    TritonModelConfig,
    TritonStatistics,
)
from pointserve.service.served_model import ServedModel

router = APIRouter(prefix="/v2", tags=["v2 (Triton extensions)"], dependencies=[Authorized])
# pointserve's model states in Triton's words (ModelReadyState).
TRITON_STATE = {
    "loading": "LOADING",
    "ready": "READY",
    "draining": "UNLOADING",
    "stopped": "UNAVAILABLE",
    "failed": "UNAVAILABLE",
}
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
    summary="Repository index (model repository extension; no load / unload)",
    response_model=list[RepositoryIndexEntry],
    responses=ERROR_RESPONSES,
    openapi_extra={"requestBody": REPOSITORY_INDEX_BODY},
)
async def repository_index(request: Request, state: StateDep) -> Response:
    ready_only = _ready_only(await request.body())
    entries = []
    for name in sorted(state.models):
        served = state.models[name]
        triton_state = TRITON_STATE.get(served.state, "UNAVAILABLE")
        reason = "" if triton_state == "READY" else f"model is {served.state}"
        entries.append({"name": name, "version": str(served.version), "state": triton_state, "reason": reason})
    # Models in the repository folder that are not served (disabled in the settings, or published after the start).
    on_disk = await asyncio.to_thread(Repository(state.settings.repository).models)
    for name in on_disk:
        if name not in state.models:
            entries.append({"name": name, "state": "UNAVAILABLE", "reason": "not served (not loaded at start-up)"})
    if ready_only:
        entries = [e for e in entries if e["state"] == "READY"]
    return json_response(entries)
