"""Running the app under uvicorn with a graceful shutdown.

On the first SIGTERM (or Ctrl-C) the server drains: readiness turns false, new requests are answered 503
(with ``Connection: close``), and the requests already accepted run to their answers; once none is left
(or ``drain_timeout_s`` passed) the server stops listening, answers what still arrives on open connections
for ``drain_linger_s`` (so a request racing in on a just-accepted connection gets a 503, not a reset), then
uvicorn shuts down as usual and the process exits 0. A second Ctrl-C forces the exit.
"""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from pointserve.errors import PointServeError
from pointserve.service.logs import configure_logging
from pointserve.service.settings import Settings
from pointserve.service.state import ServiceState

log = logging.getLogger("pointserve.service")


class GracefulServer(uvicorn.Server):
    """uvicorn's server with a drain phase before its own shutdown."""

    def __init__(self, config: uvicorn.Config, state: ServiceState):
        super().__init__(config)
        self.service_state = state
        self._listeners_closed_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.service_state.draining or not self.started:
            super().handle_exit(sig, frame)  # second signal, or not serving yet: uvicorn's own behaviour
            return
        log.info(
            "draining: refusing new requests, finishing accepted ones",
            extra={"signal": signal.Signals(sig).name, "in_flight": self.service_state.in_flight},
        )
        self.service_state.start_draining()

    async def on_tick(self, counter: int) -> bool:
        state = self.service_state
        if self._listeners_closed_at is None and state.drained():
            # Stop accepting connections, but keep answering (503 + Connection: close) on the open ones for a
            # moment: a request that raced in on a just-accepted connection gets an answer, not a reset.
            for server in self.servers:
                server.close()
            self._listeners_closed_at = time.monotonic()
            log.info("drained", extra={"in_flight": state.in_flight})
        if self._listeners_closed_at is not None:
            lingered = time.monotonic() - self._listeners_closed_at >= state.settings.drain_linger_s
            if lingered and state.in_flight == 0:
                return True
        return await super().on_tick(counter)


def uvicorn_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="auto",  # uvloop when installed
        http="auto",  # httptools when installed
        lifespan="on",
        log_config=None,  # keep pointserve's structured logging
        access_log=False,  # the service middleware logs each request with its id
        timeout_graceful_shutdown=max(settings.drain_timeout_s, 1.0),
        server_header=False,
    )


def run_server(app: FastAPI, settings: Settings) -> None:
    """Serve ``app`` until SIGTERM/Ctrl-C; raises PointServeError when it cannot start."""
    configure_logging(settings.log_level, settings.log_format)
    server = GracefulServer(uvicorn_config(app, settings), app.state.service)
    server.run()
    if not server.started:
        raise PointServeError(f"the server did not start on {settings.host}:{settings.port} (see the log above)")
