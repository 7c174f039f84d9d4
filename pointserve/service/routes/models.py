"""``GET /v1/models`` and ``GET /v1/models/{model}``: what is served, and how."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from starlette.responses import Response

from pointserve.service.deps import Authorized, StateDep, find_model
from pointserve.service.routes.common import json_response
from pointserve.service.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/v1", tags=["v1"], dependencies=[Authorized])


@router.get(
    "/models",
    summary="List the served models",
    response_model=dict[str, list[dict[str, Any]]],
    responses=ERROR_RESPONSES,
)
async def list_models(state: StateDep) -> Response:
    return json_response({"models": [served.info() for served in state.models.values()]})


@router.get(
    "/models/{model}",
    summary="One model: task, classes/parts, inputs, variant, backend, versions, accuracy",
    response_model=dict[str, Any],
    responses=ERROR_RESPONSES,
)
async def get_model(state: StateDep, model: Annotated[str, Path(description="model name")]) -> Response:
    return json_response(find_model(state, model).info())
