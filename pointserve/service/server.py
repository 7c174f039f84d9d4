"""Running the app under uvicorn with a graceful, prompt shutdown, and with limits on slow or too many clients.

On the first SIGTERM (or Ctrl-C) the server drains: readiness turns false, new requests are answered 503
(with ``Connection: close``), and the requests already accepted run to their answers. Once none is left (or
``drain_timeout_s`` passed) the server stops listening and closes its connections as soon as nothing can come on
them: a kept-alive or just-opened connection is given ``drain_linger_s`` from its last activity (a request racing
in on it gets a 503, not a reset), an older idle one is closed at once. Then the app shuts down (batchers, runners)
and the process exits 0, skipping the interpreter's slow teardown (:func:`exit_now`); idle, that is a few tens of
milliseconds after the signal. A second Ctrl-C forces the exit.

The connections are uvicorn's protocol with the limits of :mod:`pointserve.service.connections`
(``header_timeout_s``, ``max_connections``) and uvicorn's ``timeout_keep_alive`` (``keep_alive_timeout_s``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import signal
import sys
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from pointserve.errors import PointServeError
from pointserve.service.connections import HttpProtocolName, connection_protocol
from pointserve.service.logs import configure_logging
from pointserve.service.settings import Settings
from pointserve.service.state import ServiceState

log = logging.getLogger("pointserve.service")
uvicorn_log = logging.getLogger("uvicorn.error")

TICK_S = 0.1  # uvicorn's own tick, while serving
DRAIN_TICK_S = 0.005  # while draining: the exit follows the last answer closely


class GracefulServer(uvicorn.Server):
    """uvicorn's server with a drain phase before its own shutdown, and no fixed sleeps in either."""

    def __init__(self, config: uvicorn.Config, state: ServiceState):
        super().__init__(config)
        self.service_state = state
        self._listeners_closed_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.service_state.draining or not self.started:
            super().handle_exit(sig, frame)  # second signal, or not serving yet: uvicorn's own behaviour
        else:
            log.info(
                "draining: refusing new requests, finishing accepted ones",
                extra={"signal": signal.Signals(sig).name, "in_flight": self.service_state.in_flight},
            )
            self.service_state.start_draining()
        self._wake_up()

    def _wake_up(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # (the loop has closed)
                loop.call_soon_threadsafe(wake.set)  # safe from a signal handler: it writes the loop's wake-up fd

    async def main_loop(self) -> None:
        # uvicorn's loop sleeps 0.1 s between ticks; this one wakes on a signal and ticks fast while draining.
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        try:
            counter = 0
            should_exit = await self.on_tick(counter)
            while not should_exit:
                counter = (counter + 1) % 864000
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), DRAIN_TICK_S if self.service_state.draining else TICK_S)
                self._wake.clear()
                should_exit = await self.on_tick(counter)
        finally:
            self._loop = None

    async def on_tick(self, counter: int) -> bool:
        state = self.service_state
        if self._listeners_closed_at is None and state.drained():
            for server in self.servers:
                server.close()  # stop accepting; the open connections are settled below
            self._listeners_closed_at = time.monotonic()
            log.info("drained", extra={"in_flight": state.in_flight})
        if self._listeners_closed_at is not None and self._connections_settled():
            return True
        return await super().on_tick(counter)

    def _connections_settled(self) -> bool:
        """After the drain: close each connection that is quiet for ``drain_linger_s`` (a request arriving on it
        before that gets a 503 and ``Connection: close``); True once none is left to wait for, or the linger has
        passed since the listeners closed (uvicorn's shutdown then sees the last answers out)."""
        linger = self.service_state.settings.drain_linger_s
        if time.monotonic() - self._listeners_closed_at >= linger:
            return True
        if self._loop is None:
            return False
        now, waiting = self._loop.time(), False
        for connection in list(self.server_state.connections):
            drain_state = getattr(connection, "drain_state", None)
            if drain_state is None:  # not our protocol: wait out the linger
                waiting = True
                continue
            phase = drain_state()
            if phase == "busy":
                waiting = True
            elif phase != "closing":
                if now - connection.quiet_since >= linger:
                    connection.shutdown()  # idle or never used: nothing is on its way
                else:
                    waiting = True
        return not waiting

    async def shutdown(self, sockets: list | None = None) -> None:
        if self._listeners_closed_at is None:  # not drained (a second signal, a startup failure): uvicorn's own
            await super().shutdown(sockets=sockets)
            return
        # uvicorn's shutdown, without its fixed 0.1 s sleeps: the drain has left little or nothing to wait for.
        uvicorn_log.info("Shutting down")
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        deadline = time.monotonic() + self.config.timeout_graceful_shutdown
        while (self.server_state.connections or self.server_state.tasks) and not self.force_exit:
            if time.monotonic() >= deadline:
                uvicorn_log.error(
                    "Cancel %s running task(s), timeout graceful shutdown exceeded", len(self.server_state.tasks)
                )
                for task in self.server_state.tasks:
                    task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
                break
            await asyncio.sleep(DRAIN_TICK_S)
        if not self.force_exit:
            await self.lifespan.shutdown()


def uvicorn_config(app: FastAPI, settings: Settings, *, http: HttpProtocolName = "auto") -> uvicorn.Config:
    """uvicorn's config for the service; ``http``: the HTTP protocol under the limits (auto: httptools if
    installed, else h11, as uvicorn picks)."""
    state: ServiceState | None = getattr(app.state, "service", None)
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="auto",  # uvloop when installed
        http=connection_protocol(settings, state.metrics if state is not None else None, http),
        ws="none",  # no websocket routes: an upgrade request is an ordinary request
        lifespan="on",
        log_config=None,  # keep pointserve's structured logging
        access_log=False,  # the service middleware logs each request with its id
        timeout_keep_alive=settings.keep_alive_timeout_s,  # type: ignore[arg-type] # a float works
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


def exit_now(code: int) -> None:
    """End the process at once, once the server has stopped: run the atexit handlers, flush the logs and the
    standard streams, then ``os._exit``. What it skips is the interpreter's teardown of every module and object
    (onnxruntime sessions and thread pools, numpy): 0.3 s on an idle machine, seconds on a loaded one, and
    nothing left to release that the operating system does not."""
    try:
        atexit._run_exitfuncs()
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    finally:
        os._exit(code)
