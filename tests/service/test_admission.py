"""Admission control: the limit follows from the measured batch profile and the budget; over it, a request is
refused with 503 + Retry-After on its request line, before its body is read."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import numpy as np
import pytest
from repo_builder import CLASSIFIER
from server_helpers import running_server, session_settings

from pointserve.service.app import create_app
from pointserve.service.core.admission import AdmissionControl, BatchProfile, measure_batch_profile


def test_the_preferred_batch_is_the_smallest_within_5_percent_of_the_best():
    # clouds/s: 1 -> 100, 2 -> 190, 4 -> 200, 8 -> 196, 16 -> 160
    profile = BatchProfile({1: 0.01, 2: 2 / 190, 4: 0.02, 8: 8 / 196, 16: 0.1}, num_points=1024)
    assert profile.preferred_batch_size == 2 and profile.largest_efficient_batch_size == 8
    assert profile.seconds_for(4) == 0.02
    assert profile.seconds_for(3) == pytest.approx((2 / 190 + 0.02) / 2)  # interpolated
    assert profile.seconds_for(32) == pytest.approx(0.2)  # past the largest: its time per cloud
    assert profile.as_dict()["batch_ms"]["4"] == 20.0


def test_the_limit_is_the_work_the_budget_holds_at_the_drain_rate():
    gate = AdmissionControl(instances=2, preferred_batch_size=4, batch_s=0.02, latency_budget_s=0.5)
    assert gate.drain_rate == pytest.approx(400)  # 2 instances x 4 clouds / 20 ms
    assert gate.limit == 200
    default = AdmissionControl(instances=1, preferred_batch_size=4, batch_s=0.05)
    assert default.budget_s == pytest.approx(0.2) and default.limit == 16  # 4 preferred batches
    fast = AdmissionControl(instances=1, preferred_batch_size=1, batch_s=0.001)
    assert fast.budget_s == pytest.approx(0.1) and fast.limit == 100  # never below 100 ms of work
    fixed = AdmissionControl(instances=1, preferred_batch_size=4, batch_s=0.05, max_admitted=3)
    assert [fixed.try_admit() for _ in range(4)] == [True, True, True, False]
    assert fixed.retry_after_s() == 1  # 3 clouds at 80/s: well under a second, rounded up to HTTP's unit
    fixed.release()
    assert fixed.try_admit()
    assert fixed.wait_s == pytest.approx(1.0)  # 5 budgets of 200 ms


def test_a_waiter_gets_the_next_free_slot_first_come_first_served():
    async def main():
        gate = AdmissionControl(instances=1, preferred_batch_size=1, batch_s=0.01, max_admitted=1, max_wait_s=5)
        assert await gate.admit()
        first, second = asyncio.ensure_future(gate.admit()), asyncio.ensure_future(gate.admit())
        await asyncio.sleep(0.01)
        assert gate.waiting == 2 and not first.done()
        gate.release()  # the slot changes hands: still one admitted
        assert await first and not second.done() and gate.admitted == 1
        gate.release()
        assert await second and gate.admitted == 1 and gate.refused == 0

    asyncio.run(main())


def test_no_slot_within_the_wait_is_a_refusal_and_the_room_empties():
    async def main():
        gate = AdmissionControl(instances=1, preferred_batch_size=1, batch_s=0.01, max_admitted=1, max_wait_s=0.05)
        assert await gate.admit()
        started = time.perf_counter()
        assert not await gate.admit()
        assert time.perf_counter() - started >= 0.05 and gate.refused == 1 and gate.waiting == 0
        gate.release()
        assert gate.admitted == 0

    asyncio.run(main())


def test_under_sustained_overload_the_newest_waiter_is_served_first():
    async def main():
        gate = AdmissionControl(
            instances=1, preferred_batch_size=1, batch_s=0.01, max_admitted=1, max_wait_s=5, latency_budget_s=0.05
        )
        assert await gate.admit()
        old = asyncio.ensure_future(gate.admit())
        await asyncio.sleep(0.08)  # the room has not been empty for longer than the budget
        new = asyncio.ensure_future(gate.admit())
        await asyncio.sleep(0)
        assert gate.overloaded()
        gate.release()
        assert await new and not old.done()
        gate.release()
        assert await old  # and once the newest was served, the older one still gets its turn

    asyncio.run(main())


def test_a_cancelled_waiter_leaves_no_slot_taken():
    async def main():
        gate = AdmissionControl(instances=1, preferred_batch_size=1, batch_s=0.01, max_admitted=1, max_wait_s=5)
        assert await gate.admit()
        waiter = asyncio.ensure_future(gate.admit())
        await asyncio.sleep(0.01)
        waiter.cancel()  # its client went away while it waited
        await asyncio.sleep(0)
        gate.release()
        assert gate.admitted == 0 and gate.waiting == 0

    asyncio.run(main())


def test_retry_after_is_the_drain_time_of_the_admitted_work():
    gate = AdmissionControl(instances=1, preferred_batch_size=2, batch_s=1.0, max_admitted=10)
    for _ in range(7):
        gate.try_admit()
    assert gate.retry_after_s() == 4  # 7 clouds at 2 clouds/s = 3.5 s
    assert "7 requests admitted (limit 10) and 0 waiting" in gate.refusal_message("m")


def test_loaded_batches_refresh_the_drain_rate_and_small_ones_do_not():
    gate = AdmissionControl(instances=1, preferred_batch_size=8, batch_s=0.08)
    gate.on_batch(1, [0.0], 0.05, ok=True)  # a lone cloud at low load says nothing about the loaded rate
    assert gate.drain_rate == pytest.approx(100)
    for _ in range(100):
        gate.on_batch(8, [0.0] * 8, 0.04, ok=True)
    assert gate.drain_rate == pytest.approx(200, rel=0.01)


def test_the_profile_doubles_the_batch_until_throughput_stops_growing():
    sizes = []

    def run(batch: int) -> None:  # clouds/s: 1 -> 500, 2 -> 1000, 4 -> 2000, 8 -> ~1800, 16 -> 1000
        sizes.append(batch)
        time.sleep({1: 0.002, 2: 0.002, 4: 0.002, 8: 0.0044}.get(batch, 0.001 * batch))

    profile = measure_batch_profile(run, max_batch=64, num_points=100, repeats=2)
    assert set(profile.seconds_by_batch) == {1, 2, 4, 8, 16}  # 16 is well below the best: it stops there
    assert profile.preferred_batch_size == 4


def _read_answer(sock: socket.socket) -> tuple[str, str]:
    """(head, body) of one HTTP/1.1 answer with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head.decode(), body.decode()


def _hold(url: str, body: bytes, count: int) -> list[socket.socket]:
    """Send ``count`` complete requests on raw sockets, without reading the answers."""
    host, port = url.removeprefix("http://").split(":")
    socks = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)))
        sock.sendall(
            f"POST /v1/models/{CLASSIFIER}/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        socks.append(sock)
    return socks


def test_over_the_limit_a_request_is_refused_on_its_headers_without_reading_its_body(repository):
    # Two requests admitted and held in the queue (a long batching delay, a large batch); a third that declares
    # a 1.5 MB body and sends none waits 200 ms for a slot, then is answered 503: had the server waited for its
    # body, it would hang.
    settings = session_settings(
        repository,
        batching={"max_batch_size": 8, "max_queue_delay_ms": 1500, "max_admitted": 2, "max_admission_wait_ms": 200},
    )
    body = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32).tobytes()
    with running_server(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as client:
        held = _hold(url, body, 2)
        time.sleep(0.3)
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            started = time.perf_counter()
            sock.sendall(
                f"POST /v1/models/{CLASSIFIER}/predict HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: application/octet-stream\r\nContent-Length: 1500000\r\n\r\n".encode()
            )
            head, text = _read_answer(sock)
            waited = time.perf_counter() - started
        assert head.startswith("HTTP/1.1 503"), head
        assert "retry-after: 1" in head.lower() and "at capacity" in text and "2 requests admitted" in text
        assert 0.2 <= waited < 1.0, waited  # after its wait, long before the held batch (1.5 s) ran
        metrics = client.get("/metrics").text
        assert f'pointserve_admitted_requests{{model="{CLASSIFIER}"}} 2.0' in metrics
        assert f'pointserve_admission_limit{{model="{CLASSIFIER}"}} 2.0' in metrics
        assert f'pointserve_requests_total{{model="{CLASSIFIER}",route="admission",status="503"}} 1.0' in metrics
        for sock in held:  # the admitted ones are answered when their batch runs
            assert _read_answer(sock)[0].startswith("HTTP/1.1 200")
            sock.close()
        answer = client.post(
            f"/v1/models/{CLASSIFIER}/predict", content=body, headers={"content-type": "application/octet-stream"}
        )
        assert answer.status_code == 200  # room again once they were answered
        info = client.get(f"/v1/models/{CLASSIFIER}").json()
        assert info["admission"]["limit"] == 2 and info["admission"]["refused"] == 1
        assert info["batch_profile"]["preferred_batch_size"] >= 1


def test_the_oip_infer_paths_are_admitted_like_v1(repository):
    settings = session_settings(
        repository,
        batching={"max_batch_size": 8, "max_queue_delay_ms": 1500, "max_admitted": 1, "max_admission_wait_ms": 0},
    )
    body = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32).tobytes()
    with running_server(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as client:
        held = _hold(url, body, 1)
        time.sleep(0.3)
        request = {"inputs": [{"name": "points", "datatype": "FP32", "shape": [1, 2, 3], "data": [0.0] * 6}]}
        for path in (f"/v2/models/{CLASSIFIER}/infer", f"/v2/models/{CLASSIFIER}/versions/1/infer"):
            answer = client.post(path, json=request)
            assert answer.status_code == 503 and "at capacity" in answer.json()["error"], answer.text
            assert int(answer.headers["retry-after"]) >= 1
        assert client.get(f"/v2/models/{CLASSIFIER}").status_code == 200  # metadata is never refused
        for sock in held:
            assert _read_answer(sock)[0].startswith("HTTP/1.1 200")
            sock.close()
