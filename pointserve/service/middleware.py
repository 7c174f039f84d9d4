"""The one ASGI middleware around the app (pure ASGI: it never buffers bodies or breaks disconnect detection).

Per request it: assigns the request id (the client's ``X-Request-ID`` when sane, else a new one) and returns
it as a header; refuses new work with 503 while the server drains on SIGTERM (health and metrics stay
open); refuses a body over ``max_body_bytes`` — at once when ``Content-Length`` says so, else as soon as the
streamed bytes pass the limit, never after reading it all; counts requests in flight; records metrics and
writes one structured access-log line.
"""

from __future__ import annotations

import logging
import random
import re
import time

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pointserve.errors import PayloadTooLargeError
from pointserve.service.logs import request_id_var
from pointserve.service.routes.common import CLIENT_CLOSED_REQUEST
from pointserve.service.state import ServiceState

access_log = logging.getLogger("pointserve.access")
log = logging.getLogger("pointserve.service")
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/metrics"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.match(text):
                return text
            break
    return f"{random.getrandbits(128):032x}"  # an id, not a secret: no need for os.urandom's system call


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class ServiceMiddleware:
    def __init__(self, app: ASGIApp, state: ServiceState):
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state, settings = self.state, self.state.settings
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
                if state.draining:
                    headers.append((b"connection", b"close"))  # clients reconnect elsewhere
                message = {**message, "headers": headers}
            await send(message)

        limit, received = settings.max_body_bytes, 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLargeError(f"request body is larger than the limit of {limit} bytes")
            return message

        open_path = scope["path"] in OPEN_PATHS
        try:
            if state.draining and not open_path:
                await _refuse(
                    send_with_headers, 503, "the server is shutting down; retry later", settings.retry_after_s
                )
                return
            length = _content_length(scope)
            if length is not None and length > limit:
                await _refuse(
                    send_with_headers, 413, f"request body of {length} bytes is larger than the limit of {limit}"
                )
                return
            if not open_path:
                state.in_flight += 1
                state.metrics.in_flight.inc()
            try:
                await self.app(scope, receive_limited, send_with_headers)
            finally:
                if not open_path:
                    state.in_flight -= 1
                    state.metrics.in_flight.dec()
        except ClientDisconnect:
            # The client went away while its body was being read: its fault, not the server's. Logged at info
            # with the reason, counted as a client_disconnected drop and recorded as 499 (nobody reads an answer).
            model = (scope.get("path_params") or {}).get("model", "")
            log.info("client disconnected during the upload", extra={"reason": "client_disconnected"})
            if model in state.models:
                state.metrics.dropped.labels(model=model, reason="client_disconnected").inc()
            if status == 0:
                status = CLIENT_CLOSED_REQUEST
        except Exception:  # noqa: BLE001 - the last line of defence: a JSON 500, the traceback in the log
            log.exception("unhandled error")
            if status == 0:
                await _refuse(send_with_headers, 500, "internal server error (see the server log for this request id)")
        finally:
            self._record(scope, status, time.perf_counter() - started)
            request_id_var.reset(token)

    def _record(self, scope: Scope, status: int, duration_s: float) -> None:
        route = scope.get("route")
        route_path = getattr(route, "path", None) or "unmatched"
        model = (scope.get("path_params") or {}).get("model", "")
        if model not in self.state.models:
            model = ""  # never a label per unknown name a client made up
        self.state.metrics.observe_request(model, route_path, status, duration_s)
        if self.state.settings.access_log:
            access_log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "duration_ms": round(duration_s * 1000, 3),
                    "model": model or None,
                },
            )


async def _refuse(send: Send, status: int, message: str, retry_after_s: int | None = None) -> None:
    body = orjson.dumps({"error": message})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 503 and retry_after_s is not None:
        headers.append((b"retry-after", str(retry_after_s).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
