"""The service as a process: `pointserve serve` drains gracefully on SIGTERM, and never imports torch."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from repo_builder import CLASSIFIER

from pointserve.bench.processes import free_port

BINARY = {"content-type": "application/octet-stream"}


def start_server(repository: Path, tmp_path: Path, config: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config_file = tmp_path / "serve.json"
    config_file.write_text(json.dumps(config))
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, "-m", "pointserve", "serve", "--repository", str(repository), "--port", str(port)]
        + ["--config", str(config_file)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {(tmp_path / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError("server did not become ready")


def log_messages(path: Path) -> set[str]:
    """The messages of a JSON-lines server log."""
    messages = set()
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            messages.add(json.loads(line)["message"])
    return messages


def exit_clock(process: subprocess.Popen) -> list[float]:
    """A list that gets the monotonic time at which ``process`` exits (a thread waits for it)."""
    exited_at: list[float] = []

    def wait() -> None:
        process.wait()
        exited_at.append(time.monotonic())

    threading.Thread(target=wait, daemon=True).start()
    return exited_at


# The exit follows the last answer (or SIGTERM, idle) within tens of milliseconds; 1 s is the promise.
EXIT_BOUND_S = 1.0


def test_sigterm_when_idle_exits_0_at_once(repository, tmp_path):
    process, url = start_server(repository, tmp_path, {"log_format": "json"})
    try:
        with httpx.Client(base_url=url, timeout=30) as client:  # its kept-alive connection stays open, idle
            assert (
                client.post(
                    f"/v1/models/{CLASSIFIER}/predict", content=np.zeros((40, 3), np.float32).tobytes(), headers=BINARY
                ).status_code
                == 200
            )
            time.sleep(0.7)  # idle for longer than drain_linger_s (0.5): nothing can be on its way on it
            exited_at = exit_clock(process)
            signalled_at = time.monotonic()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    while not exited_at:
        time.sleep(0.001)
    exit_s = exited_at[0] - signalled_at
    print(f"\nidle: exit 0 {exit_s:.3f} s after SIGTERM")
    assert exit_s <= EXIT_BOUND_S
    messages = log_messages(tmp_path / "server.log")
    assert {"drained", "stopped"} <= messages  # the app shut down
    assert any(m.startswith("Finished server process") for m in messages)  # and its last line was flushed


def in_flight(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith("pointserve_requests_in_flight "):
            return float(line.split()[1])
    return 0.0


async def _send_all(url: str, clouds: list[np.ndarray]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await asyncio.gather(
            *(
                client.post(f"/v1/models/{CLASSIFIER}/predict?return_logits=true", content=c.tobytes(), headers=BINARY)
                for c in clouds
            )
        )


def test_sigterm_finishes_accepted_requests_refuses_new_ones_and_exits(repository, tmp_path):
    # A long batching delay keeps the first requests waiting in the queue when SIGTERM arrives (the batch aims
    # for 64 clouds, so it waits the whole delay for them).
    batching = {"max_batch_size": 64, "preferred_batch_size": 64, "max_queue_delay_ms": 1500}
    config = {"batching": batching, "log_format": "json"}
    process, url = start_server(repository, tmp_path, config)
    try:
        rng = np.random.default_rng(0)
        clouds = [rng.standard_normal((50 + 5 * i, 3)).astype(np.float32) for i in range(8)]
        with httpx.Client(base_url=url, timeout=30) as client:
            expected = [
                client.post(
                    f"/v1/models/{CLASSIFIER}/predict?return_logits=true", content=c.tobytes(), headers=BINARY
                ).json()["logits"]
                for c in clouds
            ]
        loop = asyncio.new_event_loop()
        pending = loop.create_task(_send_all(url, clouds))
        deadline = time.monotonic() + 10
        while in_flight(url) < len(clouds):  # the metrics endpoint is answered between event-loop steps
            loop.run_until_complete(asyncio.sleep(0.02))
            assert time.monotonic() < deadline, "requests never arrived"
        process.send_signal(signal.SIGTERM)
        loop.run_until_complete(asyncio.sleep(0.2))
        # Draining: not ready, new work refused with 503 + Retry-After, while the accepted requests wait.
        ready = httpx.get(f"{url}/v2/health/ready", timeout=5)
        assert ready.status_code == 503 and "shutting down" in ready.json()["error"]
        refused = httpx.post(f"{url}/v1/models/{CLASSIFIER}/predict", content=clouds[0].tobytes(), headers=BINARY)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert not pending.done()
        exited_at = exit_clock(process)
        answers = loop.run_until_complete(pending)
        answered_at = time.monotonic()
        loop.close()
        assert [a.status_code for a in answers] == [200] * len(clouds)
        for answer, logits in zip(answers, expected, strict=True):
            np.testing.assert_allclose(answer.json()["logits"], logits, atol=1e-5)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    while not exited_at:
        time.sleep(0.001)
    print(f"\n{len(clouds)} queued requests answered; exit {exited_at[0] - answered_at:.3f} s after the last answer")
    assert exited_at[0] - answered_at <= EXIT_BOUND_S
    messages = log_messages(tmp_path / "server.log")
    assert "drained" in messages and any(m.startswith("draining") for m in messages)


async def _closed_loop_client(
    url: str, cloud: np.ndarray, expected: list[float], outcomes: dict, stop_at: float, answered_at: list[float]
):
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while time.monotonic() < stop_at:
            try:
                response = await client.post(
                    f"/v1/models/{CLASSIFIER}/predict?return_logits=true", content=cloud.tobytes(), headers=BINARY
                )
                answered_at[0] = max(answered_at[0], time.monotonic())
            except httpx.ConnectError:
                outcomes["refused_connection"] += 1
                return  # the server has closed its socket: it is gone
            except httpx.HTTPError as exc:
                outcomes[f"cut_off:{type(exc).__name__}"] += 1
                return
            if response.status_code == 200:
                good = np.allclose(response.json()["logits"], expected, atol=1e-5)
                outcomes["ok" if good else "wrong_answer"] += 1
            else:
                outcomes[f"http_{response.status_code}"] += 1
                await asyncio.sleep(0.01)


def test_sigterm_under_load_cuts_no_request_off(repository, tmp_path):
    from collections import Counter

    process, url = start_server(repository, tmp_path, {"batching": {"max_batch_size": 8, "max_queue_delay_ms": 2}})
    try:
        cloud = np.random.default_rng(1).standard_normal((64, 3)).astype(np.float32)
        expected = httpx.post(
            f"{url}/v1/models/{CLASSIFIER}/predict?return_logits=true", content=cloud.tobytes(), headers=BINARY
        ).json()["logits"]
        outcomes: Counter[str] = Counter()
        answered_at = [0.0]
        exited_at = exit_clock(process)

        async def main():
            stop_at = time.monotonic() + 40
            clients = [
                asyncio.ensure_future(_closed_loop_client(url, cloud, expected, outcomes, stop_at, answered_at))
                for _ in range(16)
            ]
            while outcomes["ok"] < 50 and time.monotonic() < stop_at - 10:  # load is flowing
                await asyncio.sleep(0.05)
            before = outcomes["ok"]
            signalled_at = time.monotonic()
            process.send_signal(signal.SIGTERM)
            await asyncio.gather(*clients)
            return before, signalled_at

        ok_before, signalled_at = asyncio.run(main())
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    while not exited_at:
        time.sleep(0.001)
    print(
        f"\nunder load (16 clients): {outcomes['ok'] - ok_before} answered 200 after SIGTERM, "
        f"{outcomes['http_503']} refused 503; last answer {answered_at[0] - signalled_at:.3f} s after SIGTERM, "
        f"exit {exited_at[0] - answered_at[0]:.3f} s after it"
    )
    assert exited_at[0] - answered_at[0] <= EXIT_BOUND_S
    assert ok_before > 0 and outcomes["ok"] >= ok_before
    assert outcomes["wrong_answer"] == 0
    assert not [k for k in outcomes if k.startswith("cut_off")], outcomes
    assert set(outcomes) <= {"ok", "http_503", "refused_connection"}, outcomes


NO_TORCH_SCRIPT = textwrap.dedent(
    """
    import json, socket, sys, threading, time
    import httpx, numpy as np, uvicorn
    from pointserve.cli import build_parser
    build_parser()  # every command module registers its parser, as `pointserve serve` does
    from pointserve.service.app import create_app
    from pointserve.service.settings import load_settings

    app = create_app(load_settings(repository=sys.argv[1], log_level="warning"))
    sock = socket.socket(); sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    url = "http://127.0.0.1:%d" % sock.getsockname()[1]
    points = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
    statuses = [
        httpx.post(url + "/v1/models/shapes-cls/predict", content=points.tobytes(),
                   headers={"content-type": "application/octet-stream"}).status_code,
        httpx.post(url + "/v1/models/parts/predict?category=mug", json={"points": points.tolist()}).status_code,
        httpx.post(url + "/v1/models/parts/predict", files={"file": ("c.xyz", b"1 2 3\\n4 5 6\\n")},
                   data={"category": "lamp"}).status_code,
    ]
    server.should_exit = True
    print(json.dumps({"torch": "torch" in sys.modules, "statuses": statuses}))
    """
)


def test_the_serving_path_never_imports_torch(repository):
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH_SCRIPT, str(repository)], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"torch": False, "statuses": [200, 200, 200]}


@pytest.mark.parametrize(
    "config, needle",
    [
        ({"batching": {"max_batch_size": 0}}, "batching.max_batch_size"),
        ({"modles": {}}, "modles"),
        ({"models": {"ghost": {"variant": "fp32"}}}, "ghost"),
    ],
)
def test_serve_refuses_bad_settings_with_one_line(repository, tmp_path, config, needle):
    config_file = tmp_path / "bad.json"
    config_file.write_text(json.dumps(config))
    result = subprocess.run(
        [sys.executable, "-m", "pointserve", "serve", "--repository", str(repository), "--config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr
