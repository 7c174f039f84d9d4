"""``GET /metrics``: Prometheus text format, from the app's private registry."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from pointserve.service.deps import Authorized, StateDep

router = APIRouter(tags=["metrics"], dependencies=[Authorized])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
