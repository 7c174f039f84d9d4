"""The batch queue seen over HTTP: a disconnected client is dropped before compute, a full queue answers 503
with Retry-After at once, a request past its deadline answers 504."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import numpy as np
from repo_builder import CLASSIFIER
from server_helpers import running_server, session_settings

from pointserve.service.app import create_app


def metric(client: httpx.Client, prefix: str) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_disconnected_client_is_dropped_before_compute(repository):
    settings = session_settings(repository, batching={"max_batch_size": 64, "max_queue_delay_ms": 800})
    points = np.random.default_rng(0).standard_normal((30, 3)).astype(np.float32).tobytes()
    with running_server(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as client:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(
                f"POST /v1/models/{CLASSIFIER}/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream"
                f"\r\nContent-Length: {len(points)}\r\n\r\n".encode()
                + points
            )
            time.sleep(0.2)  # the cloud is in the queue, waiting for the batch to fill
        time.sleep(1.2)  # past the batching delay: had it stayed, it would have been computed by now
        dropped = metric(client, f'pointserve_requests_dropped_total{{model="{CLASSIFIER}",reason="cancelled"}}')
        batches = metric(client, f'pointserve_batches_total{{model="{CLASSIFIER}"')
        assert dropped == 1 and batches == 0
        answer = client.post(
            f"/v1/models/{CLASSIFIER}/predict", content=points, headers={"content-type": "application/octet-stream"}
        )
        assert answer.status_code == 200
        assert metric(client, f'pointserve_batches_total{{model="{CLASSIFIER}"') == 1


async def _burst(url: str, body: bytes, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await asyncio.gather(
            *(
                client.post(
                    f"/v1/models/{CLASSIFIER}/predict",
                    content=body,
                    headers={"content-type": "application/octet-stream"},
                )
                for _ in range(count)
            )
        )


def test_a_full_queue_answers_503_with_retry_after_and_late_requests_504(repository):
    # One cloud at a time, one waiting: a burst overflows the queue at once. A tight deadline makes the ones
    # that did get in time out while they wait.
    settings = session_settings(
        repository,
        retry_after_s=3,
        batching={"max_batch_size": 1, "max_queue_size": 1, "request_timeout_s": 0.005, "threads_per_instance": 1},
    )
    body = np.random.default_rng(0).standard_normal((2000, 3)).astype(np.float32).tobytes()
    with running_server(create_app(settings)) as url:
        answers = asyncio.run(_burst(url, body, 12))
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 503, 504} and 503 in statuses and 504 in statuses, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["retry-after"] == "3" and "overloaded" in answer.json()["error"]
        if answer.status_code == 504:
            assert "request_timeout_s=0.005" in answer.json()["error"]


def test_a_client_that_aborts_its_upload_is_the_clients_fault(repository, caplog):
    """Headers promise a body, half of it arrives, the socket closes: no 500 in the metrics or the log, a 499
    (nginx's "client closed request") and a client_disconnected drop; the next request is served."""
    settings = session_settings(repository)
    points = np.random.default_rng(1).standard_normal((2000, 3)).astype(np.float32).tobytes()
    with running_server(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as client:
        host, port = url.removeprefix("http://").split(":")
        with caplog.at_level("INFO", logger="pointserve.service"):
            with socket.create_connection((host, int(port))) as sock:
                sock.sendall(
                    f"POST /v1/models/{CLASSIFIER}/predict HTTP/1.1\r\nHost: x\r\n"
                    f"Content-Type: application/octet-stream\r\nContent-Length: {len(points)}\r\n\r\n".encode()
                    + points[: len(points) // 2]
                )
                time.sleep(0.3)  # the server is reading the body
            deadline = time.monotonic() + 10
            while metric(client, 'pointserve_requests_total{model="' + CLASSIFIER) < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
        requests = client.get("/metrics").text
        assert 'status="500"' not in requests
        assert (
            metric(
                client,
                f'pointserve_requests_total{{model="{CLASSIFIER}",route="/v1/models/{{model}}/predict",status="499"}}',
            )
            == 1
        )
        assert (
            metric(client, 'pointserve_requests_dropped_total{model="' + CLASSIFIER + '",reason="client_disconnected"}')
            == 1
        )
        assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
        assert any("disconnected" in r.getMessage() for r in caplog.records if r.levelname == "INFO")
        answer = client.post(
            f"/v1/models/{CLASSIFIER}/predict", content=points, headers={"content-type": "application/octet-stream"}
        )
        assert answer.status_code == 200
