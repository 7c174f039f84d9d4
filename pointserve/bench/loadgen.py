"""Closed-loop HTTP load against a running pointserve: the core of ``pointserve loadgen`` (first version).

``--concurrency`` clients (httpx, async) each send their next request as soon as the last is answered, for
``--duration`` seconds or ``--requests`` requests, whichever comes first. Payloads are encoded once, up
front, so the generator spends its CPU on HTTP, not on encoding. Loopback targets only, unless
``--allow-remote``. With ``--baseline-repository`` it measures the raw throughput of the served variant in
this process (:mod:`pointserve.bench.loadgen_baseline`): at several batch sizes first, then at the best one
between rounds of load, for the "served / raw" ratio.

    python -m pointserve.bench.loadgen --model shapes-cls --payload binary --concurrency 32 --duration 20 \\
        --baseline-repository repository

(``pointserve loadgen`` is the extended command built on this module: sweeps, rates, datasets, charts.)

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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

from pointserve.bench.synthetic import make_clouds
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
    client: str = "httpx"
    latencies_s: list[float] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "latencies_s"}


def check_loopback(url: str) -> None:
    """Refuse a target that is not on this machine (the generator is for local measurements)."""
    host = urlparse(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise ConfigError(f"cannot resolve {host!r} in {url}") from None
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise ConfigError(f"{url} is not a loopback address; pass --allow-remote to load another machine")


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


Sender = Callable[[Payload], Awaitable["int | str"]]


@asynccontextmanager
async def _httpx_sender(url: str, headers: dict[str, str], timeout_s: float, tls) -> AsyncIterator[Sender]:
    import httpx

    # One transport with one connection per simulated user, driven directly: httpx's shared pool scans every
    # connection for every request, and its Client layer (URL join, header merge, cookie jar, auth and
    # redirect flows) costs about a third of its CPU per request; neither is needed to replay fixed requests.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    extensions = {"timeout": httpx.Timeout(timeout_s).as_dict()}
    base = url.rstrip("/")
    async with httpx.AsyncHTTPTransport(limits=limits, verify=tls) as transport:
        built: dict[int, httpx.Request] = {}

        async def send(payload: Payload) -> int | str:
            request = built.get(id(payload))
            if request is None:  # built once per payload; a bytes body can be sent again and again
                request = built[id(payload)] = httpx.Request(
                    "POST",
                    base + payload.path,
                    content=payload.body,
                    headers={**headers, **payload.headers},
                    extensions=extensions,
                )
            try:
                response = await transport.handle_async_request(request)
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            except httpx.HTTPError as exc:
                return type(exc).__name__
            return response.status_code

        yield send


@asynccontextmanager
async def _aiohttp_sender(url: str, headers: dict[str, str], timeout_s: float, tls) -> AsyncIterator[Sender]:
    try:
        import aiohttp
    except ImportError:
        raise ConfigError("--client aiohttp needs aiohttp: pip install aiohttp") from None
    connector = aiohttp.TCPConnector(limit=1, ssl=tls)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout, headers=headers) as session:

        async def send(payload: Payload) -> int | str:
            try:
                async with session.post(payload.path, data=payload.body, headers=payload.headers) as response:
                    await response.read()
                    return response.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                return type(exc).__name__

        yield send


CLIENTS = {"httpx": _httpx_sender, "aiohttp": _aiohttp_sender}


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
    client: str = "httpx",
) -> LoadResult:
    """Closed-loop load: ``concurrency`` clients cycle through ``payloads`` until time or count runs out.
    Only requests sent after ``warmup_s`` count. ``client``: "httpx" (default) or "aiohttp" (about a quarter
    of httpx's CPU per request, which matters when the generator shares the server's cores)."""
    import ssl

    if client not in CLIENTS:
        raise ConfigError(f"unknown client {client!r}; choose one of {', '.join(CLIENTS)}")
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    tls = ssl.create_default_context()  # one for all clients: loading the CA store costs ~0.1 s each time
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    sent = 0
    measure_from = time.perf_counter() + warmup_s
    stop_at = measure_from + duration_s

    async def client_loop(index: int) -> None:
        nonlocal sent
        async with CLIENTS[client](url, headers, timeout_s, tls) as send:
            turn = index
            while time.perf_counter() < stop_at and (max_requests is None or sent < max_requests):
                payload = payloads[turn % len(payloads)]
                turn += concurrency
                started = time.perf_counter()
                counted = started >= measure_from
                if counted:
                    sent += 1
                status = await send(payload)
                if not counted:
                    continue
                if status == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[f"http_{status}" if isinstance(status, int) else status] += 1

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
        client=client,
        latencies_s=latencies,
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
    from pointserve.bench.loadgen_baseline import RawBaseline

    baseline = RawBaseline(
        repository, model, variant, num_points=num_points, max_batch=max(batch_sizes), threads=threads
    )
    try:
        return baseline.sweep(batch_sizes, seconds)
    finally:
        baseline.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL (loopback only by default)")
    parser.add_argument("--model", required=True, help="model name")
    parser.add_argument("--payload", choices=PAYLOADS, default="binary", help="request encoding")
    parser.add_argument(
        "--client", choices=("httpx", "aiohttp"), default="httpx", help="HTTP client (aiohttp: less CPU per request)"
    )
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
    parser.add_argument(
        "--round-seconds", type=float, default=5.0, help="with a baseline: load seconds between raw measurements"
    )
    parser.add_argument("--json", dest="json_out", help="write the results to this JSON file")


def _served_variant(url: str, model: str, api_key: str | None) -> str | None:
    import httpx

    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.get(f"{url}/v1/models/{model}", headers=headers, timeout=10)
    if response.status_code != 200:
        raise ConfigError(f"{url}: model {model!r} not served ({response.status_code}: {response.text[:200]})")
    return response.json()["variant"]


def _print_result(args: argparse.Namespace, result: LoadResult, ratio: float | None) -> None:
    lat = result.latency_ms
    print(
        f"{args.payload} ({args.client}) c={args.concurrency} N={args.points}: {result.requests_per_s:.1f} req/s, "
        f"p50 {lat.get('p50', float('nan')):.1f} ms, p99 {lat.get('p99', float('nan')):.1f} ms, "
        f"ok {result.ok}, errors {sum(result.errors.values())} {result.errors or ''}"
        + (f", served/raw {ratio:.2f}" if ratio is not None else "")
    )


def _merge(results: list[LoadResult]) -> LoadResult:
    latencies = [x for r in results for x in r.latencies_s]
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r.errors)
    duration = sum(r.duration_s for r in results)
    first = results[0]
    return LoadResult(
        payload=first.payload,
        concurrency=first.concurrency,
        num_points=first.num_points,
        requests=sum(r.requests for r in results),
        ok=sum(r.ok for r in results),
        errors=dict(errors),
        duration_s=round(duration, 3),
        requests_per_s=sum(r.ok for r in results) / max(duration, 1e-9),
        latency_ms=percentiles_ms(latencies),
        client=first.client,
        latencies_s=latencies,
    )


def main_from_args(args: argparse.Namespace) -> int:
    """The command. With a baseline, the load runs in rounds with a raw measurement at the best batch size
    between them, so the two see the same machine (on a shared machine the drift between separate runs is
    larger than the effect measured)."""
    if args.concurrency < 1 or args.duration <= 0 or args.points < 1 or args.clouds < 1:
        raise ConfigError("--concurrency, --duration, --points and --clouds must be positive")
    if not args.allow_remote:
        check_loopback(args.url)
    variant = _served_variant(args.url, args.model, args.api_key)
    report: dict[str, Any] = {"model": args.model, "variant": variant}
    clouds = make_clouds(args.clouds, args.points, args.channels)
    payloads = [encode_payload(args.payload, args.model, c, args.category) for c in clouds]
    load = {
        "concurrency": args.concurrency,
        "max_requests": args.requests,
        "timeout_s": args.timeout,
        "api_key": args.api_key,
        "payload_name": args.payload,
        "num_points": args.points,
        "client": args.client,
    }
    if not args.baseline_repository:
        result = asyncio.run(run_load(args.url, payloads, duration_s=args.duration, warmup_s=args.warmup, **load))
        ratio = None
    else:
        from pointserve.bench.loadgen_baseline import RawBaseline

        batches = [int(b) for b in args.baseline_batches.split(",") if b.strip()]
        baseline = RawBaseline(
            args.baseline_repository,
            args.model,
            variant,
            num_points=args.points,
            max_batch=max(batches),
            threads=args.baseline_threads,
        )
        try:
            sweep = baseline.sweep(batches, args.baseline_seconds)
            best = max(sweep, key=sweep.get)
            for size, value in sweep.items():
                print(f"raw {variant} batch {size:>3}: {value:8.1f} clouds/s", file=sys.stderr)
            rounds = max(1, round(args.duration / args.round_seconds))
            results, raw = [], []
            for index in range(rounds):
                warmup = args.warmup if index == 0 else 0.5
                results.append(
                    asyncio.run(
                        run_load(args.url, payloads, duration_s=args.duration / rounds, warmup_s=warmup, **load)
                    )
                )
                raw.append(baseline.clouds_per_s(best, args.baseline_seconds / 2))
        finally:
            baseline.close()
        result = _merge(results)
        raw_mean = sum(raw) / len(raw)
        ratio = result.requests_per_s / raw_mean
        report["raw_onnxruntime_clouds_per_s"] = {str(b): round(v, 1) for b, v in sweep.items()}
        report["raw_best"] = {
            "batch": best,
            "clouds_per_s": round(raw_mean, 1),
            "between_rounds": [round(v, 1) for v in raw],
        }
        report["served_over_raw"] = round(ratio, 3)
    report["load"] = result.as_dict()
    _print_result(args, result, ratio)
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0 if not result.errors else 1


__all__ = [
    "CLIENTS",
    "PAYLOADS",
    "LoadResult",
    "Payload",
    "check_loopback",
    "encode_payload",
    "make_clouds",
    "percentiles_ms",
    "raw_throughput",
    "run_load",
]


if __name__ == "__main__":  # python -m pointserve.bench.loadgen: one step, interleaved raw baseline
    from pointserve.errors import PointServeError

    _parser = argparse.ArgumentParser(prog="python -m pointserve.bench.loadgen", description=__doc__)
    add_arguments(_parser)
    try:
        sys.exit(main_from_args(_parser.parse_args()))
    except PointServeError as _exc:
        print(f"error: {_exc}", file=sys.stderr)
        sys.exit(2)
