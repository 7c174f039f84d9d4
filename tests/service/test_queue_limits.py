"""The batch queue seen over HTTP: a disconnected client is dropped before compute, a full queue answers 503
with Retry-After at once, a request past its deadline answers 504.

A client that goes away is the client's fault, whenever it goes: during its upload, while its request waits in
the queue, while its batch computes, or while its answer is being sent. Each is logged at info with the reason,
counted as a ``client_disconnected`` drop and recorded as 499 (never a 5xx), and the server serves on."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
from repo_builder import CLASSIFIER, PART_SEGMENTER
from server_helpers import running_server, session_settings

from pointserve.service.app import create_app
from pointserve.service.server import uvicorn_config

PREDICT_ROUTE = "/v1/models/{model}/predict"


def metric(client: httpx.Client, prefix: str) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            total += float(line.rsplit(" ", 1)[1])
    return total


@contextlib.contextmanager
def service(settings) -> Iterator[str]:
    """The app under the service's own uvicorn config (its HTTP protocol tells the middleware whether an answer
    reached the client)."""
    app = create_app(settings)
    with running_server(app, config=uvicorn_config(app, settings)) as url:
        yield url


def request_bytes(model: str, body: bytes, query: str = "") -> bytes:
    return (
        f"POST /v1/models/{model}/predict{query} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream"
        f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def wait_for_metric(client: httpx.Client, prefix: str, value: float, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while metric(client, prefix) < value:
        assert time.monotonic() < deadline, f"{prefix} never reached {value}"
        time.sleep(0.02)


def assert_the_clients_fault(client: httpx.Client, caplog, model: str, stage: str) -> None:
    """One request recorded 499 and counted as a client_disconnected drop, no 5xx, an info line with the reason."""
    route = PREDICT_ROUTE
    wait_for_metric(client, f'pointserve_requests_total{{model="{model}",route="{route}",status="499"}}', 1)
    text = client.get("/metrics").text
    assert 'status="5' not in text
    assert metric(client, f'pointserve_requests_dropped_total{{model="{model}",reason="client_disconnected"}}') == 1
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    infos = [r for r in caplog.records if r.levelname == "INFO" and r.getMessage().startswith("client disconnected")]
    assert len(infos) == 1 and stage in infos[0].getMessage() and infos[0].reason == "client_disconnected", [
        r.getMessage() for r in infos
    ]


def test_disconnected_client_is_dropped_before_compute(repository, caplog):
    settings = session_settings(repository, batching={"max_batch_size": 64, "max_queue_delay_ms": 800})
    points = np.random.default_rng(0).standard_normal((30, 3)).astype(np.float32).tobytes()
    with service(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        host, port = url.removeprefix("http://").split(":")
        with caplog.at_level("INFO", logger="pointserve.service"):
            with socket.create_connection((host, int(port))) as sock:
                sock.sendall(request_bytes(CLASSIFIER, points))
                time.sleep(0.2)  # the cloud is in the queue, waiting for the batch to fill
            time.sleep(1.2)  # past the batching delay: had it stayed, it would have been computed by now
            dropped = metric(client, f'pointserve_requests_dropped_total{{model="{CLASSIFIER}",reason="cancelled"}}')
            batches = metric(client, f'pointserve_batches_total{{model="{CLASSIFIER}"')
            assert dropped == 1 and batches == 0
            assert_the_clients_fault(client, caplog, CLASSIFIER, "while its answer was prepared")
        answer = client.post(
            f"/v1/models/{CLASSIFIER}/predict", content=points, headers={"content-type": "application/octet-stream"}
        )
        assert answer.status_code == 200
        assert metric(client, f'pointserve_batches_total{{model="{CLASSIFIER}"') == 1


def test_a_client_that_leaves_while_its_batch_computes_is_the_clients_fault(repository, caplog):
    """The batch is held in compute (the runner waits for the test) while the client hangs up: the request is
    recorded at once as the client's fault, the batch finishes, and the server answers the next request."""
    settings = session_settings(repository)
    points = np.random.default_rng(2).standard_normal((40, 3)).astype(np.float32).tobytes()
    computing, release = threading.Event(), threading.Event()
    app = create_app(settings)
    with running_server(app, config=uvicorn_config(app, settings)) as url, httpx.Client(base_url=url) as client:
        served = app.state.service.models[CLASSIFIER]
        real_infer = served.runners[0].infer

        def held_infer(inputs):
            computing.set()
            release.wait(10)
            return real_infer(inputs)

        served.runners[0].infer = held_infer  # the real runner, held in its worker thread
        try:
            host, port = url.removeprefix("http://").split(":")
            with caplog.at_level("INFO", logger="pointserve.service"):
                with socket.create_connection((host, int(port))) as sock:
                    sock.sendall(request_bytes(CLASSIFIER, points))
                    assert computing.wait(10), "the batch never started"
                assert_the_clients_fault(client, caplog, CLASSIFIER, "while its answer was prepared")
                assert metric(client, f'pointserve_batches_total{{model="{CLASSIFIER}"') == 0  # still computing
        finally:
            release.set()
            del served.runners[0].infer
        wait_for_metric(client, f'pointserve_batches_total{{model="{CLASSIFIER}",outcome="ok"}}', 1)
        answer = client.post(
            f"/v1/models/{CLASSIFIER}/predict", content=points, headers={"content-type": "application/octet-stream"}
        )
        assert answer.status_code == 200


def test_a_client_that_hangs_up_while_reading_its_answer_is_the_clients_fault(repository, caplog):
    """A big answer (every point's label, probabilities and logits: tens of MB) to a client that reads its first
    bytes and resets the connection: the server sees the answer was not delivered and records the client's
    fault, not a 200."""
    settings = session_settings(repository, max_points=250_000, max_body_bytes=4 * 1024 * 1024)
    cloud = np.random.default_rng(4).standard_normal((250_000, 3)).astype(np.float32).tobytes()
    query = "?category=mug&return_probabilities=true&return_logits=true"
    with service(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        host, port = url.removeprefix("http://").split(":")
        with caplog.at_level("INFO", logger="pointserve.service"):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the answer waits on us
            sock.settimeout(60)
            sock.connect((host, int(port)))
            sock.sendall(request_bytes(PART_SEGMENTER, cloud, query))
            first = sock.recv(64)
            assert first.startswith(b"HTTP/1.1 200"), first
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
            sock.close()
            assert_the_clients_fault(client, caplog, PART_SEGMENTER, "while its answer was sent")
        small = np.random.default_rng(5).standard_normal((200, 3)).astype(np.float32).tobytes()
        answer = client.post(
            f"/v1/models/{PART_SEGMENTER}/predict?category=mug",
            content=small,
            headers={"content-type": "application/octet-stream"},
        )
        assert answer.status_code == 200


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
            assert int(answer.headers["retry-after"]) >= 1 and "overloaded" in answer.json()["error"]
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
