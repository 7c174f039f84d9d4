"""The first version of `pointserve loadgen`, against the session server."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import numpy as np
import pytest
from repo_builder import CLASSIFIER, PART_SEGMENTER

from pointserve.bench.loadgen import PAYLOADS, check_loopback, encode_payload, make_clouds, run_load
from pointserve.errors import ConfigError


@pytest.mark.parametrize("kind", PAYLOADS)
def test_every_payload_kind_is_understood_by_the_server(client, kind):
    cloud = make_clouds(1, 50)[0]
    for model, category in ((CLASSIFIER, None), (PART_SEGMENTER, 1)):
        payload = encode_payload(kind, model, cloud, category)
        response = client.post(payload.path, content=payload.body, headers=payload.headers)
        assert response.status_code == 200, (kind, model, response.text)


def test_binary_and_json_payloads_carry_the_same_cloud(client):
    cloud = make_clouds(1, 64, seed=3)[0]
    answers = []
    for kind in ("binary", "json", "npy"):
        payload = encode_payload(kind, CLASSIFIER, cloud)
        answers.append(
            client.post(
                payload.path + ("&" if "?" in payload.path else "?") + "return_logits=1",
                content=payload.body,
                headers=payload.headers,
            ).json()["logits"]
        )
    np.testing.assert_array_equal(answers[0], answers[1])
    np.testing.assert_array_equal(answers[0], answers[2])


@pytest.mark.parametrize("http_client", ["httpx", "aiohttp"])
def test_a_short_closed_loop_run_reports_throughput_and_latency(server, http_client):
    payloads = [encode_payload("binary", CLASSIFIER, c) for c in make_clouds(4, 64)]
    result = asyncio.run(run_load(server, payloads, concurrency=4, duration_s=1.0, warmup_s=0.2, client=http_client))
    assert result.client == http_client
    assert result.ok > 0 and result.errors == {} and result.requests == result.ok
    assert result.requests_per_s > 0 and result.latency_ms["p50"] <= result.latency_ms["p99"]


def test_request_count_bound(server):
    payloads = [encode_payload("json", CLASSIFIER, c) for c in make_clouds(2, 32)]
    result = asyncio.run(run_load(server, payloads, concurrency=2, duration_s=30, max_requests=10, warmup_s=0))
    assert 10 <= result.requests <= 11 and result.errors == {}


def test_errors_are_counted_by_kind(server):
    payloads = [encode_payload("binary", "no-such-model", c) for c in make_clouds(1, 16)]
    result = asyncio.run(run_load(server, payloads, concurrency=2, duration_s=0.5, warmup_s=0, client="aiohttp"))
    assert result.ok == 0 and set(result.errors) == {"http_404"} and result.errors["http_404"] == result.requests
    refused = asyncio.run(run_load("http://127.0.0.1:9", payloads, concurrency=1, duration_s=0.3, warmup_s=0))
    assert refused.ok == 0 and set(refused.errors) == {"ConnectError"}


def test_only_loopback_targets_unless_allowed():
    check_loopback("http://127.0.0.1:8000")
    check_loopback("http://localhost:8000")
    with pytest.raises(ConfigError, match="not a loopback address"):
        check_loopback("http://10.1.2.3:8000")
    result = subprocess.run(
        [sys.executable, "-m", "pointserve", "loadgen", "--url", "http://10.1.2.3:8000", "--model", "m"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--allow-remote" in result.stderr


def test_single_step_with_the_interleaved_raw_baseline(server, repository, tmp_path):
    import argparse
    import json

    from pointserve.bench.loadgen import add_arguments, main_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "step.json"
    args = parser.parse_args(
        ["--url", server, "--model", CLASSIFIER, "--concurrency", "4", "--duration", "1", "--warmup", "0.2"]
        + ["--points", "64", "--client", "aiohttp", "--json", str(out)]
        + ["--baseline-repository", str(repository), "--baseline-batches", "1,4", "--baseline-seconds", "0.2"]
        + ["--round-seconds", "0.5"]
    )
    assert main_from_args(args) == 0
    report = json.loads(out.read_text())
    assert report["variant"] == "fp32" and report["load"]["errors"] == {} and report["load"]["ok"] > 0
    assert set(report["raw_onnxruntime_clouds_per_s"]) == {"1", "4"} and len(report["raw_best"]["between_rounds"]) == 2
    assert report["served_over_raw"] == pytest.approx(
        report["load"]["requests_per_s"] / report["raw_best"]["clouds_per_s"], rel=0.01, abs=1e-3
    )
