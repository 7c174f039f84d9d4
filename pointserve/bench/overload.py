"""Overload: goodput and latency past saturation, with clients that retry at once or honour ``Retry-After``.

Closed-loop aiohttp clients (one connection each; aiohttp costs about a quarter of httpx's CPU per request,
which matters when the clients share the server's cores) send 1,024-point float32 clouds to ``/v1`` predict:

1. a sweep finds the saturating concurrency: the fewest clients that reach 95 % of the best throughput;
2. each overload step runs ``factor`` x that many clients, either retrying a 503 at once (``immediate``) or
   after its ``Retry-After`` (``retry-after``), then a recovery step at the saturating concurrency.

Per step: goodput (answered requests/s), p50 / p99 of the answered requests (the attempt that succeeded) and of
the whole job (first attempt to answer, retries included), 503 count, the server's time per 503 (from its
``/metrics``: ``route="admission"``), and the server's RSS before and after.

    python scripts/bench_overload.py --repository REPO --model shapes-cls   # starts the server itself
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pointserve.bench.loadgen import percentiles_ms

BEHAVIOURS = ("immediate", "retry-after")
_ADMISSION_SERIES = re.compile(
    r'^pointserve_request_duration_seconds_(sum|count)\{model="(?P<model>[^"]*)",route="admission"\} (?P<v>\S+)$',
    re.M,
)


@dataclass
class StepResult:
    clients: int
    behaviour: str
    duration_s: float
    ok: int
    goodput_per_s: float
    latency_ms: dict[str, float]
    job_latency_ms: dict[str, float]
    refused: int
    refused_client_ms: float | None
    server_ms_per_refusal: float | None
    errors: dict[str, int] = field(default_factory=dict)
    rss_mb_before: float | None = None
    rss_mb_after: float | None = None
    label: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def admission_time_s(metrics_text: str, model: str) -> tuple[float, float]:
    """(total seconds, count) the server spent on admission refusals, from its Prometheus text."""
    values = {"sum": 0.0, "count": 0.0}
    for match in _ADMISSION_SERIES.finditer(metrics_text):
        if match.group("model") == model:
            values[match.group(1)] = float(match.group("v"))
    return values["sum"], values["count"]


async def _scrape(session, url: str) -> str:
    async with session.get(f"{url}/metrics") as response:
        return await response.text()


async def run_step(
    url: str,
    model: str,
    bodies: list[bytes],
    *,
    clients: int,
    seconds: float,
    behaviour: str = "immediate",
    warmup_s: float = 1.0,
    pid: int | None = None,
    timeout_s: float = 60.0,
    label: str = "",
) -> StepResult:
    """One closed-loop step; only attempts started after ``warmup_s`` count."""
    import aiohttp

    if behaviour not in BEHAVIOURS:
        raise ValueError(f"behaviour must be one of {BEHAVIOURS}")
    path = f"{url}/v1/models/{model}/predict"
    headers = {"content-type": "application/octet-stream"}
    latencies: list[float] = []
    jobs: list[float] = []
    refusals: list[float] = []
    errors: Counter[str] = Counter()
    measure_from = time.perf_counter() + warmup_s
    stop_at = measure_from + seconds

    async def client(index: int) -> None:
        connector = aiohttp.TCPConnector(limit=1, force_close=False)
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            turn = index
            while time.perf_counter() < stop_at:
                body = bodies[turn % len(bodies)]
                turn += clients
                job_started = time.perf_counter()
                while time.perf_counter() < stop_at:  # one job: attempts until it is answered
                    started = time.perf_counter()
                    try:
                        async with session.post(path, data=body, headers=headers) as response:
                            await response.read()
                            status, retry_after = response.status, response.headers.get("retry-after")
                    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                        if started >= measure_from:
                            errors[type(exc).__name__] += 1
                        break
                    ended = time.perf_counter()
                    counted = started >= measure_from
                    if status == 200:
                        if counted:
                            latencies.append(ended - started)
                        if job_started >= measure_from:
                            jobs.append(ended - job_started)
                        break
                    if status != 503:
                        if counted:
                            errors[f"http_{status}"] += 1
                        break
                    if counted:
                        refusals.append(ended - started)
                    if behaviour == "retry-after":
                        await asyncio.sleep(float(retry_after or 1))

    async with aiohttp.ClientSession() as probe:
        before = admission_time_s(await _scrape(probe, url), model)
        rss_before = rss_mb(pid)
        await asyncio.gather(*(client(i) for i in range(clients)))
        after = admission_time_s(await _scrape(probe, url), model)
    refused_server = after[1] - before[1]
    return StepResult(
        clients=clients,
        behaviour=behaviour,
        duration_s=seconds,
        ok=len(latencies),
        goodput_per_s=len(latencies) / seconds,
        latency_ms=percentiles_ms(latencies),
        job_latency_ms=percentiles_ms(jobs),
        refused=len(refusals),
        refused_client_ms=(sorted(refusals)[len(refusals) // 2] * 1e3) if refusals else None,
        server_ms_per_refusal=((after[0] - before[0]) / refused_server * 1e3) if refused_server else None,
        errors=dict(errors),
        rss_mb_before=rss_before,
        rss_mb_after=rss_mb(pid),
        label=label,
    )


def saturating_clients(sweep: list[StepResult], share: float = 0.95) -> int:
    """The fewest clients whose goodput reaches ``share`` of the best in the sweep."""
    best = max(step.goodput_per_s for step in sweep)
    return min(step.clients for step in sweep if step.goodput_per_s >= share * best)


def run_overload(
    url: str,
    model: str,
    bodies: list[bytes],
    *,
    sweep_clients: tuple[int, ...] = (1, 2, 4, 8, 16, 32),
    factors: tuple[int, ...] = (2, 4, 10),
    seconds: float = 8.0,
    sweep_seconds: float = 5.0,
    recovery_seconds: float = 3.0,
    pid: int | None = None,
    progress=print,
) -> dict[str, Any]:
    """The sweep, then every factor x behaviour with its recovery step; returns everything measured."""

    def step(**kwargs) -> StepResult:
        result = asyncio.run(run_step(url, model, bodies, pid=pid, **kwargs))
        progress(format_step(result))
        return result

    sweep = [step(clients=c, seconds=sweep_seconds, label="sweep") for c in sweep_clients]
    saturating = saturating_clients(sweep)
    at_saturation = next(s for s in sweep if s.clients == saturating)
    steps = []
    for factor in factors:
        for behaviour in BEHAVIOURS:
            overload = step(
                clients=factor * saturating, seconds=seconds, behaviour=behaviour, label=f"{factor}x {behaviour}"
            )
            recovery = step(clients=saturating, seconds=recovery_seconds, warmup_s=0.0, label="recovery")
            steps.append({"factor": factor, "overload": overload.as_dict(), "recovery": recovery.as_dict()})
    return {
        "saturating_clients": saturating,
        "saturated": at_saturation.as_dict(),
        "sweep": [s.as_dict() for s in sweep],
        "steps": steps,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_step(step: StepResult) -> str:
    lat = step.latency_ms
    return (
        f"{step.label:>20} c={step.clients:<4} goodput {step.goodput_per_s:7.1f}/s  p50 {_ms(lat.get('p50'))} "
        f"p99 {_ms(lat.get('p99'))} ms  503s {step.refused} (client {_ms(step.refused_client_ms)} ms, server "
        f"{_ms(step.server_ms_per_refusal)} ms)  RSS {_ms(step.rss_mb_before)}->{_ms(step.rss_mb_after)} MB"
        + (f"  errors {step.errors}" if step.errors else "")
    )


def markdown_table(report: dict[str, Any]) -> str:
    """The overload table for docs/benchmarking.md."""
    sat = report["saturated"]
    p99_sat = sat["latency_ms"].get("p99", float("nan"))
    lines = [
        f"Saturation: {report['saturating_clients']} clients, {sat['goodput_per_s']:.1f} req/s, p99 {p99_sat:.1f} ms.",
        "",
        "| load | clients | retry | goodput (req/s) | vs saturated | p50 / p99 (ms) | p99 vs saturated | job p99 (ms) "
        "| 503s | server ms per 503 | RSS MB before → after | recovery goodput / p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in report["steps"]:
        o, r = entry["overload"], entry["recovery"]
        lat, rlat = o["latency_ms"], r["latency_ms"]
        lines.append(
            f"| {entry['factor']}× | {o['clients']} | {o['behaviour']} | {o['goodput_per_s']:.1f} | "
            f"{o['goodput_per_s'] / sat['goodput_per_s']:.0%} | {_ms(lat.get('p50'))} / {_ms(lat.get('p99'))} | "
            f"{lat.get('p99', float('nan')) / p99_sat:.2f}× | {_ms(o['job_latency_ms'].get('p99'))} | {o['refused']} | "
            f"{_ms(o['server_ms_per_refusal'])} | {_ms(o['rss_mb_before'])} → {_ms(o['rss_mb_after'])} | "
            f"{r['goodput_per_s']:.1f} / {_ms(rlat.get('p99'))} |"
        )
    return "\n".join(lines)


__all__ = ["BEHAVIOURS", "StepResult", "markdown_table", "run_overload", "run_step", "saturating_clients"]
