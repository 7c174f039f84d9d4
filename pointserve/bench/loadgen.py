"""``pointserve loadgen``: closed-loop HTTP load against a running pointserve (first version).

``--concurrency`` clients (httpx, async) each send their next request as soon as the last is answered, for
``--duration`` seconds or ``--requests`` requests, whichever comes first. Payloads are encoded once, up
front, so the generator spends its CPU on HTTP, not on encoding. Loopback targets only, unless
``--allow-remote``. With ``--baseline-repository`` it first measures the raw onnxruntime throughput of the
served variant at several batch sizes in this process, for the "served / raw" ratio.

    pointserve loadgen --model shapes-cls --payload binary --concurrency 32 --duration 20 \\
        --baseline-repository repository

Importing this module costs only the standard library; numpy and httpx load when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import socket
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

from pointserve.errors import ConfigError

PAYLOADS = ("binary", "json", "npy", "v2-binary", "v2-json")


@dataclass
class Payload:
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class LoadResult:
    """One load step: counts, throughput and latency (milliseconds) of the measured window."""

    payload: str
    concurrency: int
    num_points: int
    requests: int
    ok: int
    errors: dict[str, int]
    duration_s: float
    requests_per_s: float
    latency_ms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_loopback(url: str) -> None:
    """Refuse a target that is not on this machine (the generator is for local measurements)."""
    host = urlparse(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise ConfigError(f"cannot resolve {host!r} in {url}") from None
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise ConfigError(f"{url} is not a loopback address; pass --allow-remote to load another machine")


def make_clouds(count: int, num_points: int, channels: int = 3, seed: int = 0):
    """``count`` random clouds (N, C) float32: points on jittered ellipsoids of random size and position."""
    import numpy as np

    rng = np.random.default_rng(seed)
    clouds = []
    for _ in range(count):
        direction = rng.standard_normal((num_points, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        xyz = direction * rng.uniform(0.2, 2.0, size=3) + rng.uniform(-5, 5, size=3)
        extra = rng.standard_normal((num_points, channels - 3))
        clouds.append(np.concatenate([xyz, extra], axis=1).astype(np.float32))
    return clouds


def encode_payload(kind: str, model: str, cloud, category: int | None = None) -> Payload:
    """The request for one cloud, in one of :data:`PAYLOADS` (OIP payloads hold a batch of one)."""
    import io

    import numpy as np
    import orjson

    query = f"?category={category}" if category is not None else ""
    if kind == "binary":
        body = np.ascontiguousarray(cloud, dtype="<f4").tobytes()
        return Payload(f"/v1/models/{model}/predict{query}", body, {"content-type": "application/octet-stream"})
    if kind == "json":
        obj: dict[str, Any] = {"points": cloud}
        if category is not None:
            obj["category"] = category
        body = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
        return Payload(f"/v1/models/{model}/predict", body, {"content-type": "application/json"})
    if kind == "npy":
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(cloud, dtype=np.float32), allow_pickle=False)
        return Payload(f"/v1/models/{model}/predict{query}", buffer.getvalue(), {"content-type": "application/x-npy"})
    if kind in ("v2-binary", "v2-json"):
        shape = [1, *cloud.shape]
        inputs: list[dict[str, Any]] = [{"name": "points", "datatype": "FP32", "shape": shape}]
        if category is not None:
            inputs.append({"name": "category", "datatype": "INT64", "shape": [1], "data": [category]})
        if kind == "v2-json":
            inputs[0]["data"] = np.ascontiguousarray(cloud, dtype=np.float32).ravel()
            body = orjson.dumps({"inputs": inputs}, option=orjson.OPT_SERIALIZE_NUMPY)
            return Payload(f"/v2/models/{model}/infer", body, {"content-type": "application/json"})
        raw = np.ascontiguousarray(cloud, dtype="<f4").tobytes()
        inputs[0]["parameters"] = {"binary_data_size": len(raw)}
        header = orjson.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}})
        headers = {"content-type": "application/octet-stream", "inference-header-content-length": str(len(header))}
        return Payload(f"/v2/models/{model}/infer", header + raw, headers)
    raise ConfigError(f"unknown payload {kind!r}; choose one of {', '.join(PAYLOADS)}")


def percentiles_ms(latencies_s: list[float]) -> dict[str, float]:
    import numpy as np

    if not latencies_s:
        return {}
    values = np.asarray(latencies_s) * 1e3
    summary = {f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 95, 99)}
    return {**summary, "mean": float(values.mean()), "max": float(values.max())}


async def run_load(
    url: str,
    payloads: list[Payload],
    *,
    concurrency: int = 32,
    duration_s: float = 10.0,
    max_requests: int | None = None,
    warmup_s: float = 1.0,
    timeout_s: float = 30.0,
    api_key: str | None = None,
    payload_name: str = "",
    num_points: int = 0,
) -> LoadResult:
    """Closed-loop load: ``concurrency`` clients cycle through ``payloads`` until time or count runs out.
    Only requests sent after ``warmup_s`` count."""
    import ssl

    import httpx

    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    tls = ssl.create_default_context()  # one for all clients: loading the CA store costs ~0.1 s each time
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    sent = 0
    measure_from = time.perf_counter() + warmup_s
    stop_at = measure_from + duration_s

    async def client_loop(index: int) -> None:
        # One client with one connection per simulated user: httpx's shared pool scans every connection for
        # every request, which costs more CPU than the requests themselves at high concurrency.
        nonlocal sent
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(
            base_url=url, limits=limits, timeout=timeout_s, headers=headers, verify=tls
        ) as client:
            turn = index
            while time.perf_counter() < stop_at and (max_requests is None or sent < max_requests):
                payload = payloads[turn % len(payloads)]
                turn += concurrency
                started = time.perf_counter()
                counted = started >= measure_from
                if counted:
                    sent += 1
                try:
                    response = await client.post(payload.path, content=payload.body, headers=payload.headers)
                    outcome = "ok" if response.status_code == 200 else f"http_{response.status_code}"
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                if not counted:
                    continue
                if outcome == "ok":
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[outcome] += 1

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(i) for i in range(concurrency)))
    ended = time.perf_counter()
    window = max(min(ended, stop_at) - max(started, measure_from), 1e-9) if ended > measure_from else 1e-9
    return LoadResult(
        payload=payload_name,
        concurrency=concurrency,
        num_points=num_points,
        requests=len(latencies) + sum(errors.values()),
        ok=len(latencies),
        errors=dict(errors),
        duration_s=round(window, 3),
        requests_per_s=len(latencies) / window,
        latency_ms=percentiles_ms(latencies),
    )


def raw_throughput(
    repository: str,
    model: str,
    variant: str | None,
    *,
    batch_sizes: list[int],
    num_points: int,
    threads: int | None = None,
    seconds: float = 3.0,
) -> dict[int, float]:
    """Clouds per second of ``runner.infer`` alone (no HTTP) at each batch size, same variant as served."""
    from pointserve.bench.timing import time_callable
    from pointserve.engines import create_runner
    from pointserve.repository import Repository

    model_version = Repository(repository).open(model)
    runner = create_runner(model_version, variant, max_batch=max(batch_sizes), threads=threads).load()
    clouds = make_clouds(max(batch_sizes), num_points, model_version.card.in_channels, seed=1)
    import numpy as np

    from pointserve.data.transforms import normalize

    batch = np.stack([normalize(c, model_version.card.normalization) for c in clouds])
    needs_category = model_version.card.needs_category
    results = {}
    try:
        for size in batch_sizes:
            category = np.zeros(size, dtype=np.int64) if needs_category else None
            timing = time_callable(
                lambda size=size, category=category: runner.infer(batch[:size], category),
                batch=size,
                warmup=2,
                repeats=5,
                min_total_s=seconds,
                max_total_s=seconds * 3,
            )
            results[size] = timing.clouds_per_s
    finally:
        runner.close()
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL (loopback only by default)")
    parser.add_argument("--model", required=True, help="model name")
    parser.add_argument("--payload", choices=PAYLOADS, default="binary", help="request encoding")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients (closed loop)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured (after the warm-up)")
    parser.add_argument("--requests", type=int, default=None, help="stop after this many measured requests")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured warm-up load")
    parser.add_argument("--points", type=int, default=1024, help="points per cloud")
    parser.add_argument("--clouds", type=int, default=64, help="distinct random clouds to cycle through")
    parser.add_argument("--category", type=int, default=None, help="category id (part segmentation)")
    parser.add_argument("--channels", type=int, default=3, help="coordinates per point")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds")
    parser.add_argument("--api-key", default=None, help="bearer token, if the server needs one")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback target")
    parser.add_argument("--baseline-repository", help="also measure raw onnxruntime throughput of the served variant")
    parser.add_argument("--baseline-batches", default="1,8,16,32,64", help="batch sizes for the raw baseline")
    parser.add_argument("--baseline-threads", type=int, default=None, help="intra-op threads for the raw baseline")
    parser.add_argument("--baseline-seconds", type=float, default=3.0, help="seconds per raw batch size")
    parser.add_argument("--json", dest="json_out", help="write the results to this JSON file")


def _served_variant(url: str, model: str, api_key: str | None) -> str | None:
    import httpx

    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.get(f"{url}/v1/models/{model}", headers=headers, timeout=10)
    if response.status_code != 200:
        raise ConfigError(f"{url}: model {model!r} not served ({response.status_code}: {response.text[:200]})")
    return response.json()["variant"]


def main_from_args(args: argparse.Namespace) -> int:
    if args.concurrency < 1 or args.duration <= 0 or args.points < 1 or args.clouds < 1:
        raise ConfigError("--concurrency, --duration, --points and --clouds must be positive")
    if not args.allow_remote:
        check_loopback(args.url)
    variant = _served_variant(args.url, args.model, args.api_key)
    report: dict[str, Any] = {"model": args.model, "variant": variant}
    if args.baseline_repository:
        batches = [int(b) for b in args.baseline_batches.split(",") if b.strip()]
        raw = raw_throughput(
            args.baseline_repository,
            args.model,
            variant,
            batch_sizes=batches,
            num_points=args.points,
            threads=args.baseline_threads,
            seconds=args.baseline_seconds,
        )
        best = max(raw, key=raw.get)
        report["raw_onnxruntime_clouds_per_s"] = {str(b): round(v, 1) for b, v in raw.items()}
        report["raw_best"] = {"batch": best, "clouds_per_s": round(raw[best], 1)}
        for size, value in raw.items():
            print(f"raw {variant} batch {size:>3}: {value:8.1f} clouds/s", file=sys.stderr)
    clouds = make_clouds(args.clouds, args.points, args.channels)
    payloads = [encode_payload(args.payload, args.model, c, args.category) for c in clouds]
    result = asyncio.run(
        run_load(
            args.url,
            payloads,
            concurrency=args.concurrency,
            duration_s=args.duration,
            max_requests=args.requests,
            warmup_s=args.warmup,
            timeout_s=args.timeout,
            api_key=args.api_key,
            payload_name=args.payload,
            num_points=args.points,
        )
    )
    report["load"] = result.as_dict()
    if "raw_best" in report:
        report["served_over_raw"] = round(result.requests_per_s / report["raw_best"]["clouds_per_s"], 3)
    lat = result.latency_ms
    print(
        f"{args.payload} c={args.concurrency} N={args.points}: {result.requests_per_s:.1f} req/s, "
        f"p50 {lat.get('p50', float('nan')):.1f} ms, p99 {lat.get('p99', float('nan')):.1f} ms, "
        f"ok {result.ok}, errors {sum(result.errors.values())} {result.errors or ''}"
        + (f", served/raw {report['served_over_raw']:.2f}" if "served_over_raw" in report else "")
    )
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0 if not result.errors else 1


__all__ = ["PAYLOADS", "LoadResult", "Payload", "encode_payload", "make_clouds", "raw_throughput", "run_load"]
