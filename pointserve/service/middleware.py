"""The one ASGI middleware around the app (pure ASGI: it never buffers bodies or breaks disconnect detection).

Per request it: assigns the request id (the client's ``X-Request-ID`` when sane, else a new one) and returns
it as a header; refuses new work with 503 while the server drains on SIGTERM (health and metrics stay
open); refuses a body over ``max_body_bytes`` — at once when ``Content-Length`` says so, else as soon as the
streamed bytes pass the limit, never after reading it all; inflates a gzip / deflate body as it streams in
(:mod:`pointserve.service.compression`: the same limit on the inflated bytes); counts requests in flight; records
metrics and writes one structured access-log line. A client at fault is never a 5xx: a declared body that stalls past
``body_timeout_s`` is answered 408 (``Connection: close``), a client that goes away (during the upload, while its
answer is prepared, or before it has it) is recorded as 499; both are logged at info and counted as drops
(``client_timeout``, ``client_disconnected``).
"""

from __future__ import annotations

import logging
import random
import re
import time

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pointserve.errors import PayloadTooLargeError, UnsupportedMediaTypeError
from pointserve.service.compression import BodyDecoder
from pointserve.service.connections import BodyTimeout, connection_of, receive_within
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


def _body_headers(scope: Scope) -> tuple[int | None, str | None]:
    """``Content-Length`` (None when absent or not a number) and ``Content-Encoding``, in one pass."""
    length = encoding = None
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
        elif name == b"content-encoding":
            encoding = value.decode("latin-1")
    return length, encoding


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
        # A client that went away or was too slow is its own fault, never a 5xx: client_disconnected (499) or
        # client_timeout (408), with the stage it was at; connection: uvicorn's, to see the answer delivered.
        fault: str | None = None
        stage = ""
        answered = False
        connection = connection_of(scope)

        async def send_with_headers(message: Message) -> None:
            nonlocal status, answered, fault, stage
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
                if state.draining:
                    headers.append((b"connection", b"close"))  # clients reconnect elsewhere
                message = {**message, "headers": headers}
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
                if connection is not None and connection.lost and fault is None:  # uvicorn dropped the answer
                    fault, stage = "client_disconnected", "before its answer was sent"

        limit, received = settings.max_body_bytes, 0
        body_timeout_s, body_done = settings.body_timeout_s, False
        decoder: BodyDecoder | None = None  # a gzip / deflate body, inflated as it arrives (same limit)

        async def receive_limited() -> Message:
            nonlocal received, body_done, fault, stage
            # While the body is incomplete each wait for its next chunk is bounded (BodyTimeout: a 408).
            message = await (receive() if body_done else receive_within(receive, body_timeout_s))
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLargeError(f"request body is larger than the limit of {limit} bytes")
                body_done = body_done or not message.get("more_body", False)
                if decoder is not None:
                    message = {**message, "body": decoder.feed(message.get("body", b""))}
                    if body_done:
                        decoder.finish()
            elif message["type"] == "http.disconnect" and not answered and fault is None:
                fault = "client_disconnected"
                stage = "while its answer was prepared (queued or computing)" if body_done else "during the upload"
            return message

        open_path = scope["path"] in OPEN_PATHS
        refused_model = None
        try:
            if state.draining and not open_path:
                await _refuse(
                    send_with_headers, 503, "the server is shutting down; retry later", settings.retry_after_s
                )
                return
            length, encoding = _body_headers(scope)
            if length is not None and length > limit:
                await _refuse(
                    send_with_headers, 413, f"request body of {length} bytes is larger than the limit of {limit}"
                )
                return
            if encoding is not None:
                try:
                    decoder = BodyDecoder.for_header(encoding, limit)
                except UnsupportedMediaTypeError as exc:
                    await _refuse(send_with_headers, 415, str(exc))
                    return
                if decoder is not None:  # the app sees the inflated body, as behind a decoding proxy
                    scope["headers"] = [
                        (k, v) for k, v in scope["headers"] if k not in (b"content-encoding", b"content-length")
                    ]
            # Admission on the request line, before a byte of the body is read (see core/admission.py).
            inference_model = _inference_model(scope)
            served = state.models.get(inference_model) if inference_model is not None else None
            admission = served.admission if served is not None else None
            if admission is not None and not (admission.try_admit() or await admission.wait_for_slot()):
                refused_model = inference_model
                await _refuse(
                    send_with_headers, 503, admission.refusal_message(inference_model), admission.retry_after_s()
                )
                return
            if not open_path:
                state.in_flight += 1
                state.metrics.in_flight.inc()
            try:
                await self.app(scope, receive_limited, send_with_headers)
            finally:
                if admission is not None:
                    admission.release()
                if not open_path:
                    state.in_flight -= 1
                    state.metrics.in_flight.dec()
            if connection is not None and answered and fault is None:
                # Handed to uvicorn: did it reach the client's socket? (At once, unless the answer is big.)
                fault = await connection.answer_outcome(settings.send_timeout_s)
                if fault is not None:  # (almost never: the stage text is built only then)
                    stage = (
                        "while its answer was sent"
                        if fault == "client_disconnected"
                        else f"it took none of its answer for send_timeout_s={settings.send_timeout_s:g}"
                    )
        except ClientDisconnect:
            if fault is None:  # (the receive wrapper saw the disconnect first and said when)
                fault, stage = "client_disconnected", "during the upload"
        except BodyTimeout as exc:
            fault, stage = "client_timeout", str(exc)
            if status == 0:
                await _refuse(send_with_headers, 408, f"{exc}; closing the connection")
        except Exception:  # noqa: BLE001 - the last line of defence: a JSON 500, the traceback in the log
            log.exception("unhandled error")
            if status == 0:
                await _refuse(send_with_headers, 500, "internal server error (see the server log for this request id)")
        finally:
            # The model label: the refused one, or the route's; never a name a client made up.
            model = refused_model or (scope.get("path_params") or {}).get("model", "")
            model = model if model in state.models else ""
            if fault is not None:
                status = self._client_fault(model, fault, stage)
            self._record(scope, status, time.perf_counter() - started, model, refused=refused_model is not None)
            request_id_var.reset(token)

    def _client_fault(self, model: str, reason: str, stage: str) -> int:
        """Log (info, with the reason) and count a request its client gave up or stalled; the status to record:
        499 (nginx's "client closed request": nobody reads an answer) or 408."""
        if reason == "client_disconnected":
            log.info(f"client disconnected {stage}", extra={"reason": reason})
        else:
            log.info(f"client too slow: {stage}", extra={"reason": reason})
        if model:
            self.state.metrics.dropped.labels(model=model, reason=reason).inc()
        return CLIENT_CLOSED_REQUEST if reason == "client_disconnected" else 408

    def _record(self, scope: Scope, status: int, duration_s: float, model: str, refused: bool) -> None:
        route = scope.get("route")
        route_path = getattr(route, "path", None) or ("admission" if refused else "unmatched")
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


def _inference_model(scope: Scope) -> str | None:
    """The model an inference request names (v1 predict, v2 infer, v2 versioned infer), else None."""
    if scope.get("method") != "POST":
        return None
    parts = scope["path"].split("/")
    if len(parts) == 5 and parts[2] == "models" and (parts[1], parts[4]) in (("v1", "predict"), ("v2", "infer")):
        return parts[3]
    if len(parts) == 7 and parts[1:3] == ["v2", "models"] and parts[4] == "versions" and parts[6] == "infer":
        return parts[3]
    return None


async def _refuse(send: Send, status: int, message: str, retry_after_s: int | None = None) -> None:
    body = orjson.dumps({"error": message})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 503 and retry_after_s is not None:
        headers.append((b"retry-after", str(retry_after_s).encode()))
    if status == 408:
        headers.append((b"connection", b"close"))  # the rest of the body may still be on its way
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
