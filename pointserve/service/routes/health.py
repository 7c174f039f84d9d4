"""Health endpoints (open even when an API key is configured): liveness and readiness, KServe v2 paths."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from pointserve.service.deps import StateDep
from pointserve.service.routes.common import json_response

router = APIRouter(prefix="/v2/health", tags=["health"])


@router.get("/live", summary="The process is up")
async def live() -> Response:
    return json_response({"live": True})


@router.get(
    "/ready",
    summary="Every model is loaded and the server is not shutting down (503 otherwise)",
    responses={503: {"description": "not ready (loading, or draining after SIGTERM)"}},
)
async def ready(state: StateDep) -> Response:
    if state.ready:
        return json_response({"ready": True})
    reason = "shutting down" if state.draining else "models not ready"
    return json_response({"ready": False, "error": f"not ready: {reason}"}, status_code=503)
