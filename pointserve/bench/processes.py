"""Servers the benchmark scripts start and stop themselves: a subprocess on a free loopback port."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pointserve.errors import PointServeError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PointServeError(f"the server exited with {process.returncode} before it was ready ({url})")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise PointServeError(f"the server was not ready within {timeout_s:g} s ({url})")


@contextmanager
def server_process(
    command: Sequence[str], port: int, ready_path: str, log_file: Path, timeout_s: float = 120.0
) -> Iterator[tuple[subprocess.Popen, str]]:
    """Run ``command`` (which listens on 127.0.0.1:``port``) until the block ends; yields (process, base url)."""
    url = f"http://127.0.0.1:{port}"
    with open(log_file, "wb") as log:
        process = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(url + ready_path, process, timeout_s)
            yield process, url
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def pointserve_command(repository: str | Path, port: int, config: str | Path | None = None) -> list[str]:
    command = [sys.executable, "-m", "pointserve", "serve", "--repository", str(repository), "--port", str(port)]
    return command + (["--config", str(config)] if config else [])


__all__ = ["free_port", "pointserve_command", "server_process"]
