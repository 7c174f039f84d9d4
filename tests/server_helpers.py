"""Helpers for the service tests: a real uvicorn server in a thread, and the session's settings."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from repo_builder import CLASSIFIER

from pointserve.service.settings import Settings, load_settings

# The session server's limits, small so hostile-input tests stay cheap.
MAX_POINTS = 20_000
MAX_BODY_BYTES = 2 * 1024 * 1024
MIN_POINTS_CLASSIFIER = 8


@contextmanager
def running_server(app, *, config: uvicorn.Config | None = None, timeout_s: float = 60.0) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread on a pre-bound loopback socket; yields the base URL.

    ``config``: uvicorn's config for ``app`` (e.g. the service's own, ``server.uvicorn_config``, with the
    connection limits); by default a plain one."""
    # proto=IPPROTO_TCP: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on connections whose socket says
    # TCP; with proto 0 a response's body waited for the client's delayed ACK of its headers (+40 ms, measured).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if config is None:
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="on", loop="asyncio", timeout_graceful_shutdown=5
        )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def session_settings(repository: Path, **overrides) -> Settings:
    values = {
        "repository": repository,
        "max_points": MAX_POINTS,
        "max_body_bytes": MAX_BODY_BYTES,
        "models": {CLASSIFIER: {"min_points": MIN_POINTS_CLASSIFIER}},
        "batching": {"max_batch_size": 8, "max_queue_delay_ms": 5, "request_timeout_s": 30, "threads_per_instance": 1},
        "log_level": "warning",
        "access_log": False,
    }
    values.update(overrides)
    return load_settings(**values)
