"""HTTP status mapping, in one place: every error the service answers is JSON ``{"error": "..."}``.

:class:`~pointserve.errors.PointServeError` subclasses map to a status by :data:`STATUS_BY_ERROR` (most
specific first); FastAPI's request validation errors become 422 with ``error`` plus pydantic's ``detail``;
Starlette's HTTP exceptions (404 route, 405 method, 401 auth) keep their status. Anything unexpected is
caught by :class:`~pointserve.service.middleware.ServiceMiddleware`: a 500 whose body says only that (the
traceback goes to the log, with the request id).
"""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from pointserve.errors import (
    DataError,
    EngineError,
    InputError,
    ModelControlError,
    ModelNotFoundError,
    PayloadTooLargeError,
    PointServeError,
    RequestTimeoutError,
    ServiceUnavailableError,
    UnsupportedMediaTypeError,
)

log = logging.getLogger("pointserve.service")

STATUS_BY_ERROR: tuple[tuple[type[PointServeError], int], ...] = (
    (PayloadTooLargeError, 413),
    (UnsupportedMediaTypeError, 415),
    (InputError, 400),
    (DataError, 400),  # an uploaded file that is not a readable point cloud
    (ModelControlError, 400),  # a failed load (Triton's status for it; the old version serves on), or control off
    (ModelNotFoundError, 404),
    (ServiceUnavailableError, 503),
    (RequestTimeoutError, 504),
    (EngineError, 500),
    (PointServeError, 500),
)


def status_for(exc: BaseException) -> int:
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(exc, error_type):
            return status
    return 500


def error_response(status: int, message: str, headers: dict[str, str] | None = None, **extra) -> Response:
    body = orjson.dumps({"error": message, **extra})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def retry_after_headers(request: Request) -> dict[str, str]:
    """``Retry-After`` for a 503: the model's drain time when the request names a served model, else the
    configured ``retry_after_s``."""
    service = getattr(request.app.state, "service", None)
    if service is None:
        return {"Retry-After": "1"}
    served = service.models.get(request.path_params.get("model", ""))
    if served is not None and served.admission is not None:
        return {"Retry-After": str(served.admission.retry_after_s())}
    return {"Retry-After": str(service.settings.retry_after_s)}


async def _pointserve_error(request: Request, exc: PointServeError) -> Response:
    status = status_for(exc)
    headers = retry_after_headers(request) if status == 503 else None
    if status == 500:
        log.error("request failed: %s", exc, exc_info=exc)
    elif status > 500:  # overload and deadlines: expected under load, worth a line, not an alarm
        log.warning("request refused: %s", exc)
    return error_response(status, str(exc) or type(exc).__name__, headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()))
    detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")} for e in errors]
    return error_response(422, f"{where}: {first.get('msg')}" if where else str(first.get("msg")), detail=detail)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return error_response(exc.status_code, message, dict(exc.headers or {}) or None)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PointServeError, _pointserve_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
