"""Connection-level limits uvicorn lacks: a deadline for request headers, a cap on open connections, and whether
an answer reached its client.

uvicorn hands the app only requests whose headers are complete, so a client that opens connections and sends its
headers a byte at a time ("slowloris") never reaches the middleware. It is stopped here, in a subclass of uvicorn's
HTTP protocol (httptools' when httptools is installed, which is what uvicorn's ``http="auto"`` picks, else h11's),
passed as ``uvicorn.Config(http=...)`` by :func:`pointserve.service.server.uvicorn_config`:

* ``header_timeout_s``: a connection must complete its request headers within this long after it opened or, on a
  kept-alive connection, after the first bytes of its next request (the idle time between two requests is
  ``keep_alive_timeout_s``, uvicorn's own timer). Past it the connection is closed, after a 408 when part of a
  request had come.
* ``max_connections``: a connection over the cap gets a canned 503 (JSON, ``Retry-After``, ``Connection: close``)
  at once, without parsing anything or running the app, and is closed. The cap is kept below the process's open
  files limit (:func:`max_connections_within_fd_limit`).
* every request's scope carries its connection (``scope["extensions"][EXTENSION]``, taken out by the middleware
  with :func:`connection_of`) so that the middleware can tell, once the app has answered, whether the answer
  reached the client's socket, the client went away first, or it stopped reading (``send_timeout_s``).

The body timeout is the middleware's (:func:`receive_within`): it bounds a wait inside the app's ``receive``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # no httptools: uvicorn's "auto" serves with h11
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from pointserve.service.metrics import ServiceMetrics
    from pointserve.service.settings import Settings

log = logging.getLogger("pointserve.service")

EXTENSION = "pointserve.connection"
FD_RESERVE = 64  # descriptors kept for everything but client connections: the listener, logs, models, threads
MAX_LINGERING = 32  # refused connections read (and dropped) at once before closing; more are closed straight away
REFUSED_LINGER_S = 1.0
_LOG_EVERY_S = 10.0
_POLL_FIRST_S, _POLL_MAX_S = 0.002, 0.05

Outcome = Literal["client_disconnected", "client_timeout"] | None
HttpProtocolName = Literal["auto", "httptools", "h11"]


class BodyTimeout(Exception):
    """The client sent no more of its declared body for ``body_timeout_s`` (the middleware answers 408)."""


if sys.version_info >= (3, 11):

    async def receive_within(receive: Callable[[], Awaitable[Any]], timeout_s: float) -> Any:
        """``await receive()``, or :class:`BodyTimeout` after ``timeout_s`` (a timer, no extra task)."""
        try:
            async with asyncio.timeout(timeout_s):
                return await receive()
        except TimeoutError:
            raise BodyTimeout(f"no request body bytes came for body_timeout_s={timeout_s:g}") from None

else:  # pragma: no cover - Python 3.10

    async def receive_within(receive: Callable[[], Awaitable[Any]], timeout_s: float) -> Any:
        try:
            return await asyncio.wait_for(receive(), timeout_s)
        except asyncio.TimeoutError:
            raise BodyTimeout(f"no request body bytes came for body_timeout_s={timeout_s:g}") from None


def _canned(status: int, reason: str, message: str, retry_after_s: int | None = None) -> bytes:
    body = orjson.dumps({"error": message})
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}"]
    if retry_after_s is not None:
        head.append(f"retry-after: {retry_after_s}")
    head.append("connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def max_connections_within_fd_limit(requested: int) -> int:
    """``requested``, or less when the open files limit (RLIMIT_NOFILE) cannot hold that many connections plus
    :data:`FD_RESERVE`; the soft limit is first raised towards the hard one if it is too low."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return requested
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = requested + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return requested
    cap = max(1, soft - FD_RESERVE)
    log.warning(
        "max_connections lowered to fit the open files limit",
        extra={"max_connections": requested, "effective": cap, "rlimit_nofile": soft},
    )
    return cap


class ConnectionLimits:
    """What the connections of one server share: the limits, the count of admitted connections, the metrics."""

    def __init__(
        self,
        *,
        header_timeout_s: float,
        max_connections: int,
        retry_after_s: int,
        metrics: ServiceMetrics | None = None,
    ):
        self.header_timeout_s = header_timeout_s
        self.max_connections = max_connections
        self.open = 0
        self.lingering = 0
        self.busy_answer = _canned(
            503,
            "Service Unavailable",
            f"too many open connections (max_connections={max_connections}); retry later",
            retry_after_s,
        )
        self.timeout_answer = _canned(
            408, "Request Timeout", f"request headers not complete within header_timeout_s={header_timeout_s:g}"
        )
        self._cut = metrics.connections_cut if metrics is not None else None
        if metrics is not None:
            metrics.connections_open.set_function(lambda: self.open)
        self._unlogged: dict[str, int] = {}
        self._logged_at: dict[str, float] = {}

    def cut(self, reason: str) -> None:
        """Count a connection the server closed; log it, at most once per ten seconds per reason."""
        if self._cut is not None:
            self._cut.labels(reason=reason).inc()
        self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._logged_at.get(reason, -_LOG_EVERY_S) >= _LOG_EVERY_S:
            message = {
                "header_timeout": "closed connections without complete request headers in time",
                "max_connections": "refused connections over max_connections (503)",
            }.get(reason, "closed connections")
            log.warning(
                message,
                extra={
                    "reason": reason,
                    "connections": self._unlogged.pop(reason),
                    "header_timeout_s": self.header_timeout_s,
                    "max_connections": self.max_connections,
                },
            )
            self._logged_at[reason] = now


class _Guarded:
    """The limits, mixed into one of uvicorn's HTTP protocols (it relies on their ``transport``, ``loop`` and
    ``cycle`` attributes and on the cycle's ``response_complete``)."""

    limits: ClassVar[ConnectionLimits]
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._partial = False  # bytes of a request whose headers are not complete yet have come
        self._admitted = False
        self._refused = False
        self._lost = False
        self._lost_error = False
        self._lost_waiter: asyncio.Future | None = None
        self.quiet_since = 0.0  # loop time of the connection's last activity: opened, bytes came, answer sent

    # -- asyncio.Protocol ---------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self.quiet_since = self.loop.time()
        limits = self.limits
        if limits.open >= limits.max_connections:
            self._refuse()
            return
        limits.open += 1
        self._admitted = True
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # read and dropped, so that closing does not reset the connection under the 503
        starts_request = not self._in_request()
        if starts_request:
            self._partial = True
            self.quiet_since = self.loop.time()
        super().data_received(data)  # type: ignore[misc]
        # The first bytes of the next request on a kept-alive connection: a deadline only if its headers are still
        # incomplete after this chunk (usually they came whole, and a timer would be made and cancelled at once).
        if starts_request and self._partial and self._header_timer is None and not self.transport.is_closing():
            self._arm()

    def on_response_complete(self) -> None:
        self.quiet_since = self.loop.time()
        super().on_response_complete()  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)  # type: ignore[misc]
        self._disarm()
        self._lost, self._lost_error = True, exc is not None
        if self._admitted:
            self.limits.open -= 1
            self._admitted = False
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
            self.limits.lingering -= 1
        if self._lost_waiter is not None and not self._lost_waiter.done():
            self._lost_waiter.set_result(None)

    # -- header deadline --------------------------------------------------------------------------------------
    def _in_request(self) -> bool:
        cycle = self.cycle
        return cycle is not None and not cycle.response_complete

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_complete(self, scope: dict) -> None:
        self._disarm()
        self._partial = False
        scope.setdefault("extensions", {})[EXTENSION] = self

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        transport = self.transport
        if transport.is_closing() or self._in_request():
            return
        self.limits.cut("header_timeout")
        if self._partial:
            transport.write(self.limits.timeout_answer)
        transport.close()
        if transport.get_write_buffer_size():
            transport.abort()  # it does not read either: no waiting for the 408 to go out

    # -- connection cap ---------------------------------------------------------------------------------------
    def _refuse(self) -> None:
        self._refused = True
        limits, transport = self.limits, self.transport
        limits.cut("max_connections")
        transport.write(limits.busy_answer)
        if limits.lingering < MAX_LINGERING and transport.can_write_eof():
            # Half-close, then read (and drop) what the client sends until it closes or for a second: closing
            # with its request unread would reset the connection, and a reset can discard the 503 it has not read.
            transport.write_eof()
            limits.lingering += 1
            self._linger_timer = self.loop.call_later(REFUSED_LINGER_S, transport.abort)
        else:
            transport.close()

    # -- for the middleware and the graceful shutdown --------------------------------------------------------
    @property
    def lost(self) -> bool:
        """The connection is gone (the client closed it, it broke, or the server closed it)."""
        return self._lost

    async def answer_outcome(self, send_timeout_s: float) -> Outcome:
        """Call once the app has sent its whole answer (and the connection was still there): ``None`` once the
        answer is all in the socket (the kernel sends it on), ``"client_disconnected"`` when the connection broke
        first, ``"client_timeout"`` when the client took none of it for ``send_timeout_s`` (the connection is
        then aborted). Most answers fit in the socket at once; only bigger ones wait, polled."""
        transport, loop = self.transport, self.loop
        unsent = transport.get_write_buffer_size()
        if not self._lost and not unsent and not transport.is_closing():
            return None
        if self._lost_waiter is None:
            self._lost_waiter = loop.create_future()
        poll, progress_at = _POLL_FIRST_S, loop.time()
        while not self._lost:
            await asyncio.wait((self._lost_waiter,), timeout=poll)
            if self._lost:
                break
            now_unsent = transport.get_write_buffer_size()
            if not now_unsent and not transport.is_closing():
                return None
            if now_unsent < unsent:
                unsent, progress_at = now_unsent, loop.time()
            elif loop.time() - progress_at >= send_timeout_s:
                transport.abort()
                return "client_timeout"
            poll = min(poll * 2, _POLL_MAX_S)
        # Closed after the answer: flushed and closed cleanly (Connection: close), or broken (reset, broken pipe).
        return "client_disconnected" if self._lost_error else None

    def drain_state(self) -> Literal["busy", "idle", "waiting", "closing"]:
        """For the graceful shutdown: ``busy`` (a request is being answered), ``idle`` (kept alive after an
        answer, nothing since), ``waiting`` (opened or part of a request came: a request may still arrive), or
        ``closing``."""
        if self._refused or self._lost or self.transport.is_closing():
            return "closing"
        if self._in_request():
            return "busy"
        return "waiting" if self._partial or self.cycle is None else "idle"


class GuardedH11Protocol(_Guarded, H11Protocol):
    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers came (h11 parses one request at a time)
            self._headers_complete(self.cycle.scope)


if HttpToolsProtocol is not None:

    class GuardedHttpToolsProtocol(_Guarded, HttpToolsProtocol):  # type: ignore[misc,valid-type]
        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._headers_complete(self.scope)


def connection_of(scope: dict) -> _Guarded | None:
    """The request's connection, taken out of its scope (None under another server or protocol)."""
    extensions = scope.get("extensions")
    return extensions.pop(EXTENSION, None) if extensions else None


def connection_protocol(
    settings: Settings, metrics: ServiceMetrics | None = None, http: HttpProtocolName = "auto"
) -> type[asyncio.Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)``: uvicorn's httptools or h11 protocol with the limits."""
    if http == "httptools" and HttpToolsProtocol is None:
        raise RuntimeError("http='httptools' needs httptools installed")
    base: type = GuardedH11Protocol if http == "h11" or HttpToolsProtocol is None else GuardedHttpToolsProtocol
    limits = ConnectionLimits(
        header_timeout_s=settings.header_timeout_s,
        max_connections=max_connections_within_fd_limit(settings.max_connections),
        retry_after_s=settings.retry_after_s,
        metrics=metrics,
    )
    return type(base.__name__, (base,), {"limits": limits, "__module__": __name__})
