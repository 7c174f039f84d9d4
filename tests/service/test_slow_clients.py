"""Slow clients and too many clients are bounded (pointserve/service/connections.py, the middleware's body
timeout), on a real uvicorn server with the service's own config (server.uvicorn_config) and short timeouts.

Every test runs on both HTTP protocols: httptools (uvicorn's "auto" pick when installed) and h11.
Run with -s to see the measured figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import statistics
import time
from collections.abc import Iterator

import httpx
import numpy as np
import orjson
import pytest
from repo_builder import CLASSIFIER, PART_SEGMENTER
from server_helpers import running_server, session_settings

from pointserve.service.app import create_app
from pointserve.service.server import uvicorn_config

HEADER_TIMEOUT_S = 0.5
BODY_TIMEOUT_S = 0.5
KEEP_ALIVE_TIMEOUT_S = 1.0
MARGIN_S = 2.5  # generous: a noisy 2-core machine runs the attack, the server and the normal client at once
PREDICT = f"/v1/models/{CLASSIFIER}/predict"
BINARY = {"content-type": "application/octet-stream"}
CLOUD = np.random.default_rng(3).standard_normal((100, 3)).astype(np.float32).tobytes()
PROTOCOLS = ["httptools", "h11"]


def metric(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


@contextlib.contextmanager
def service(repository, http: str, **overrides) -> Iterator[str]:
    settings = session_settings(repository, **overrides)
    app = create_app(settings)
    with running_server(app, config=uvicorn_config(app, settings, http=http)) as url:
        yield url


@pytest.fixture(scope="module", params=PROTOCOLS)
def slow_server(request, repository) -> Iterator[str]:
    with service(
        repository,
        request.param,
        header_timeout_s=HEADER_TIMEOUT_S,
        body_timeout_s=BODY_TIMEOUT_S,
        keep_alive_timeout_s=KEEP_ALIVE_TIMEOUT_S,
    ) as url:
        yield url


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


async def _attacker(url: str, payload: bytes) -> dict:
    """Open a connection, send ``payload``, stall; return what came back and when the server closed it."""
    reader, writer = await asyncio.open_connection(*host_port(url))
    if payload:
        writer.write(payload)
        await writer.drain()
    stalled_at = time.monotonic()
    received = b""
    try:
        while chunk := await reader.read(65536):
            received += chunk
    except ConnectionError:
        pass
    closed_after = time.monotonic() - stalled_at
    writer.close()
    return {"received": received, "closed_after": closed_after}


async def _normal_requests(client: httpx.AsyncClient, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        answer = await client.post(PREDICT, content=CLOUD, headers=BINARY)
        latencies.append(time.perf_counter() - started)
        assert answer.status_code == 200, answer.text
    return latencies


def _status_and_body(raw: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, orjson.loads(body)


def test_slowloris_is_cut_while_a_normal_client_is_served(slow_server):
    """80 connections stall (10 silent, 50 in their headers, 20 half-way through a declared body): every one is
    closed within its timeout plus a margin — the body ones with a 408 JSON naming body_timeout_s — and counted,
    while a normal client keeps getting 200s at about its usual latency."""
    silent, headers_only, half_body = 10, 50, 20
    partial_headers = (
        f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nX-Slow: ".encode()
    )
    half = (
        f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {len(CLOUD)}\r\n\r\n".encode()
        + CLOUD[: len(CLOUD) // 2]
    )

    async def main():
        async with httpx.AsyncClient(base_url=slow_server, timeout=30) as client:
            before = (await client.get("/metrics")).text
            await _normal_requests(client, 5)  # warm up
            baseline = await _normal_requests(client, 20)
            attack = [
                asyncio.ensure_future(_attacker(slow_server, payload))
                for payload in [b""] * silent + [partial_headers] * headers_only + [half] * half_body
            ]
            await asyncio.sleep(0.05)  # the attack connections are open and stalled
            under_attack = await _normal_requests(client, 20)
            results = await asyncio.wait_for(
                asyncio.gather(*attack), timeout=max(HEADER_TIMEOUT_S, BODY_TIMEOUT_S) + 15
            )
            after = (await client.get("/metrics")).text
        return before, baseline, under_attack, results, after

    before, baseline, under_attack, results, after = asyncio.run(main())
    cut_silent = [r["closed_after"] for r in results[:silent]]
    cut_headers = [r["closed_after"] for r in results[silent : silent + headers_only]]
    cut_body = [r["closed_after"] for r in results[silent + headers_only :]]
    base_ms, attack_ms = statistics.median(baseline) * 1000, statistics.median(under_attack) * 1000
    print(
        f"\nslowloris: {len(results)} connections cut; silent after {min(cut_silent):.3f}-{max(cut_silent):.3f} s, "
        f"partial headers {min(cut_headers):.3f}-{max(cut_headers):.3f} s (header_timeout_s={HEADER_TIMEOUT_S}), "
        f"half bodies {min(cut_body):.3f}-{max(cut_body):.3f} s (body_timeout_s={BODY_TIMEOUT_S}); "
        f"normal client median {base_ms:.1f} ms baseline, {attack_ms:.1f} ms under attack "
        f"(max {max(under_attack) * 1000:.1f} ms)"
    )
    for closed_after in cut_silent + cut_headers:
        assert HEADER_TIMEOUT_S * 0.8 <= closed_after <= HEADER_TIMEOUT_S + MARGIN_S
    for closed_after in cut_body:
        assert BODY_TIMEOUT_S * 0.8 <= closed_after <= BODY_TIMEOUT_S + MARGIN_S
    assert all(r["received"] == b"" for r in results[:silent])  # nothing asked, nothing answered
    for result in results[silent : silent + headers_only]:
        status, _, body = _status_and_body(result["received"])
        assert status == 408 and "header_timeout_s=0.5" in body["error"]
    for result in results[silent + headers_only :]:
        status, headers, body = _status_and_body(result["received"])
        assert status == 408 and "body_timeout_s=0.5" in body["error"], body
        assert headers["connection"] == "close" and headers["content-type"] == "application/json"
    assert attack_ms <= max(5 * base_ms, base_ms + 250), (base_ms, attack_ms)

    def grew(prefix: str) -> float:
        return metric(after, prefix) - metric(before, prefix)

    assert grew('pointserve_connections_cut_total{reason="header_timeout"}') == silent + headers_only
    assert grew(f'pointserve_requests_dropped_total{{model="{CLASSIFIER}",reason="client_timeout"}}') == half_body
    assert grew(
        f'pointserve_requests_total{{model="{CLASSIFIER}",route="/v1/models/{{model}}/predict",status="408"}}'
    ) == (half_body)
    assert 'status="5' not in after


def test_an_idle_kept_alive_connection_closes_after_keep_alive_timeout_s(slow_server):
    """After an answer the idle time is keep_alive_timeout_s (1 s), not header_timeout_s (0.5 s): the header
    deadline starts with the first bytes of the next request."""
    with socket.create_connection(host_port(slow_server), timeout=10) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while b'{"live":true}' not in answer:
            answer += sock.recv(4096)
        answered_at = time.monotonic()
        assert answer.startswith(b"HTTP/1.1 200")
        assert sock.recv(4096) == b""  # blocks until the server closes the connection
        idle_s = time.monotonic() - answered_at
    print(f"\nidle kept-alive connection closed after {idle_s:.3f} s (keep_alive_timeout_s={KEEP_ALIVE_TIMEOUT_S})")
    assert KEEP_ALIVE_TIMEOUT_S * 0.8 <= idle_s <= KEEP_ALIVE_TIMEOUT_S + MARGIN_S


def test_a_request_trickled_after_a_kept_alive_answer_is_bounded_by_header_timeout_s(slow_server):
    with socket.create_connection(host_port(slow_server), timeout=10) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while b'{"live":true}' not in answer:
            answer += sock.recv(4096)
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")  # the next request, headers unfinished
        started = time.monotonic()
        rest = b""
        while chunk := sock.recv(4096):
            rest += chunk
        cut_s = time.monotonic() - started
    print(f"\nsecond request's headers cut after {cut_s:.3f} s (header_timeout_s={HEADER_TIMEOUT_S})")
    assert rest.startswith(b"HTTP/1.1 408")
    assert HEADER_TIMEOUT_S * 0.8 <= cut_s <= HEADER_TIMEOUT_S + MARGIN_S


@pytest.mark.parametrize("http", PROTOCOLS)
def test_a_connection_over_max_connections_gets_an_immediate_503_and_later_ones_work(repository, http):
    cap = 8
    with service(repository, http, max_connections=cap, retry_after_s=2) as url:
        held = []
        try:
            for _ in range(cap):  # cap connections, each with an answered request: all admitted
                sock = socket.create_connection(host_port(url), timeout=10)
                sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = b""
                while b'{"live":true}' not in answer:
                    answer += sock.recv(4096)
                held.append(sock)
            started = time.monotonic()
            with socket.create_connection(host_port(url), timeout=10) as extra:  # sends nothing
                refused = b""
                while chunk := extra.recv(4096):
                    refused += chunk
            refused_s = time.monotonic() - started
            status, headers, body = _status_and_body(refused)
            assert status == 503 and headers["retry-after"] == "2" and headers["connection"] == "close"
            assert "max_connections=8" in body["error"]
            answer = httpx.get(f"{url}/v2/health/live", timeout=10)  # a client that sends its request at once
            assert answer.status_code == 503 and answer.headers["retry-after"] == "2"
            assert "max_connections" in answer.json()["error"]
        finally:
            for sock in held:
                sock.close()
        reopened = time.monotonic()
        deadline = reopened + 10
        while (answer := httpx.get(f"{url}/v2/health/live", timeout=10)).status_code != 200:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.02)
        reopened_s = time.monotonic() - reopened
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
    print(
        f"\nmax_connections={cap}: connection {cap + 1} answered 503 in {refused_s * 1000:.1f} ms; "
        f"served again {reopened_s * 1000:.1f} ms after the others closed"
    )
    assert refused_s < 1.0
    assert metric(metrics, 'pointserve_connections_cut_total{reason="max_connections"}') == 2


@pytest.mark.parametrize("http", PROTOCOLS)
def test_a_client_that_does_not_read_its_answer_is_cut_after_send_timeout_s(repository, http, caplog):
    """A big answer (every point's probabilities and logits) to a client that never reads: once the socket is
    full and nothing moves for send_timeout_s the connection is aborted, recorded 408 and counted as the
    client's (client_timeout), never a 5xx."""
    send_timeout_s = 0.5
    cloud = np.random.default_rng(5).standard_normal((100_000, 3)).astype(np.float32).tobytes()
    with (
        service(repository, http, send_timeout_s=send_timeout_s, max_points=100_000) as url,
        httpx.Client(base_url=url, timeout=30) as client,
        caplog.at_level("INFO", logger="pointserve.service"),
    ):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, and nobody reads it
        sock.settimeout(30)
        sock.connect(host_port(url))
        with sock:
            query = "category=mug&return_probabilities=true&return_logits=true"
            sock.sendall(
                f"POST /v1/models/{PART_SEGMENTER}/predict?{query} HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {len(cloud)}\r\n\r\n".encode()
                + cloud
            )
            sent_at = time.monotonic()
            drop = f'pointserve_requests_dropped_total{{model="{PART_SEGMENTER}",reason="client_timeout"}}'
            while metric(client.get("/metrics").text, drop) < 1:
                assert time.monotonic() - sent_at < 30, "the slow reader was never cut"
                time.sleep(0.02)
            cut_s = time.monotonic() - sent_at
            received = b""
            with contextlib.suppress(ConnectionError):
                while chunk := sock.recv(1 << 20):  # what the socket held, then the reset (or the end)
                    received += chunk
        metrics = client.get("/metrics").text
    head = received.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
    length = int(head.split("content-length: ")[1].split("\r\n")[0])
    print(
        f"\nslow reader: cut {cut_s:.3f} s after its request (compute + send_timeout_s={send_timeout_s}); "
        f"it had {len(received) / 1e6:.2f} MB of a {length / 1e6:.1f} MB answer"
    )
    assert head.startswith("http/1.1 200") and len(received) < length
    requests = (
        f'pointserve_requests_total{{model="{PART_SEGMENTER}",route="/v1/models/{{model}}/predict",status="408"}}'
    )
    assert metric(metrics, requests) == 1
    assert 'status="5' not in metrics
    assert any("send_timeout_s=0.5" in r.getMessage() for r in caplog.records if r.levelname == "INFO")
