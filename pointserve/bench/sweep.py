"""``pointserve loadgen`` sweeps, in the manner of Triton's perf_analyzer: a concurrency sweep
(``--concurrency 1,2,4,...,64``, closed loop) or fixed request rates (``--request-rate 50,100``, open loop),
JSON / binary / .npy / OIP v2 payloads, clouds from a dataset or a folder of point-cloud files.

Per step: throughput, p50/p90/p95/p99 latency and error counts; the steps go to a table, CSV / JSON files
and a latency-vs-throughput PNG. Everything is bounded: each step by ``--duration`` (and ``--requests``),
the whole sweep by ``--max-total-time``; only loopback targets unless ``--allow-remote``.

Builds on :mod:`pointserve.bench.loadgen` (payload encoding, the closed-loop runner, the loopback check).
Open loop: requests leave on a fixed schedule whether or not earlier ones were answered, and latency is
counted from the scheduled send time, so a server that falls behind shows it in its latency instead of
silently receiving fewer requests (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import csv
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pointserve.bench.loadgen import LoadResult, Payload, percentiles_ms, run_load
from pointserve.errors import ConfigError

MAX_CONCURRENCY = 1024
MAX_OUTSTANDING = 1024


@dataclass
class StepResult:
    """One step of a sweep: its load (``concurrency`` or ``request_rate``) and what was measured."""

    payload: str
    mode: str  # "concurrency" or "rate"
    load: float
    requests: int
    ok: int
    errors: dict[str, int]
    duration_s: float
    throughput_rps: float
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"c={int(self.load)}" if self.mode == "concurrency" else f"{self.load:g}/s"

    def row(self) -> dict[str, Any]:
        lat = self.latency_ms
        return {
            "payload": self.payload,
            "mode": self.mode,
            "load": self.load,
            "requests": self.requests,
            "ok": self.ok,
            "errors": sum(self.errors.values()),
            "error_kinds": ";".join(f"{k}:{v}" for k, v in sorted(self.errors.items())),
            "duration_s": self.duration_s,
            "throughput_rps": round(self.throughput_rps, 3),
            **{f"{k}_ms": round(lat[k], 3) for k in ("p50", "p90", "p95", "p99", "mean", "max") if k in lat},
        }

    @classmethod
    def from_load_result(cls, result: LoadResult) -> StepResult:
        return cls(
            payload=result.payload,
            mode="concurrency",
            load=result.concurrency,
            requests=result.requests,
            ok=result.ok,
            errors=dict(result.errors),
            duration_s=result.duration_s,
            throughput_rps=result.requests_per_s,
            latency_ms=dict(result.latency_ms),
        )


async def run_rate(
    url: str,
    payloads: list[Payload],
    *,
    rate_per_s: float,
    duration_s: float,
    max_requests: int | None = None,
    warmup_s: float = 1.0,
    timeout_s: float = 30.0,
    api_key: str | None = None,
    max_outstanding: int = MAX_OUTSTANDING,
    payload_name: str = "",
) -> StepResult:
    """Open loop at ``rate_per_s``: one request every 1/rate seconds for ``warmup_s + duration_s``; those
    scheduled after the warm-up count. More than ``max_outstanding`` unanswered requests: the next ones are
    not sent and count as ``client_overload`` errors (the server cannot keep up with this rate)."""
    import httpx

    if rate_per_s <= 0:
        raise ConfigError(f"request rate must be positive, got {rate_per_s}")
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=max_outstanding, max_keepalive_connections=min(max_outstanding, 256))
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    outstanding = 0
    interval = 1.0 / rate_per_s
    total = int((warmup_s + duration_s) * rate_per_s)
    warm = int(warmup_s * rate_per_s)
    if max_requests is not None:
        total = min(total, warm + max_requests)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout_s, headers=headers) as client:

        async def send(index: int, scheduled: float) -> None:
            nonlocal outstanding
            payload = payloads[index % len(payloads)]
            try:
                response = await client.post(payload.path, content=payload.body, headers=payload.headers)
                outcome = "ok" if response.status_code == 200 else f"http_{response.status_code}"
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            finally:
                outstanding -= 1
            if index < warm:
                return
            if outcome == "ok":
                latencies.append(time.perf_counter() - scheduled)
            else:
                errors[outcome] += 1

        start = time.perf_counter()
        tasks = []
        for index in range(total):
            scheduled = start + index * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if outstanding >= max_outstanding:
                if index >= warm:
                    errors["client_overload"] += 1
                continue
            outstanding += 1
            tasks.append(asyncio.create_task(send(index, scheduled)))
        await asyncio.gather(*tasks)
        ended = time.perf_counter()
    window = max(ended - (start + warm * interval), 1e-9)
    return StepResult(
        payload=payload_name,
        mode="rate",
        load=rate_per_s,
        requests=len(latencies) + sum(errors.values()),
        ok=len(latencies),
        errors=dict(errors),
        duration_s=round(window, 3),
        throughput_rps=len(latencies) / window,
        latency_ms=percentiles_ms(latencies),
    )


async def run_sweep(
    url: str,
    payloads: list[Payload],
    *,
    payload_name: str,
    concurrencies: Sequence[int] = (),
    rates: Sequence[float] = (),
    duration_s: float = 10.0,
    max_requests: int | None = None,
    warmup_s: float = 1.0,
    timeout_s: float = 30.0,
    api_key: str | None = None,
    max_total_s: float = 600.0,
    progress=None,
) -> list[StepResult]:
    """Every step in order until the sweep's time budget runs out (a step that would not fit is skipped)."""
    if not concurrencies and not rates:
        raise ConfigError("give --concurrency or --request-rate steps")
    for c in concurrencies:
        if not 1 <= c <= MAX_CONCURRENCY:
            raise ConfigError(f"concurrency {c} is outside [1, {MAX_CONCURRENCY}]")
    deadline = time.perf_counter() + max_total_s
    steps: list[StepResult] = []
    plan = [("concurrency", float(c)) for c in concurrencies] + [("rate", float(r)) for r in rates]
    for mode, load in plan:
        if time.perf_counter() + warmup_s + duration_s > deadline:
            if progress:
                progress(f"time budget spent: skipping {payload_name} {mode} {load:g} and later steps")
            break
        if mode == "concurrency":
            result = await run_load(
                url,
                payloads,
                concurrency=int(load),
                duration_s=duration_s,
                max_requests=max_requests,
                warmup_s=warmup_s,
                timeout_s=timeout_s,
                api_key=api_key,
                payload_name=payload_name,
            )
            step = StepResult.from_load_result(result)
        else:
            step = await run_rate(
                url,
                payloads,
                rate_per_s=load,
                duration_s=duration_s,
                max_requests=max_requests,
                warmup_s=warmup_s,
                timeout_s=timeout_s,
                api_key=api_key,
                payload_name=payload_name,
            )
        steps.append(step)
        if progress:
            progress(format_step(step))
    return steps


def format_step(step: StepResult) -> str:
    lat = step.latency_ms
    nan = float("nan")
    return (
        f"{step.payload} {step.label}: {step.throughput_rps:.1f} req/s, p50 {lat.get('p50', nan):.1f} ms, "
        f"p99 {lat.get('p99', nan):.1f} ms, ok {step.ok}, errors {sum(step.errors.values())}"
    )


TABLE_COLUMNS = ("payload", "load", "requests", "ok", "errors", "req/s", "p50 ms", "p90 ms", "p95 ms", "p99 ms")


def format_table(steps: Sequence[StepResult], clouds_per_request: int = 1) -> str:
    """A Markdown table of the steps (pastes into docs)."""
    nan = float("nan")
    rows = [list(TABLE_COLUMNS)]
    for s in steps:
        lat = s.latency_ms
        rows.append(
            [
                s.payload,
                s.label,
                str(s.requests),
                str(s.ok),
                str(sum(s.errors.values()))
                + (f" ({', '.join(f'{k} {v}' for k, v in s.errors.items())})" if s.errors else ""),
                f"{s.throughput_rps * clouds_per_request:.1f}",
                *(f"{lat.get(k, nan):.1f}" for k in ("p50", "p90", "p95", "p99")),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_COLUMNS))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def write_csv(path: str | Path, steps: Sequence[StepResult]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [s.row() for s in steps]
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def chart_series(steps: Sequence[StepResult]) -> dict[str, list[dict[str, Any]]]:
    """Steps grouped by payload (and mode) as :func:`pointserve.bench.plots.latency_throughput_chart` takes them."""
    series: dict[str, list[dict[str, Any]]] = {}
    for s in steps:
        if not s.ok:
            continue
        name = s.payload if s.mode == "concurrency" else f"{s.payload} (rate)"
        series.setdefault(name, []).append(
            {
                "throughput_rps": s.throughput_rps,
                "label": s.label,
                **{f"{k}_ms": v for k, v in s.latency_ms.items()},
            }
        )
    return series


__all__ = [
    "StepResult",
    "chart_series",
    "format_step",
    "format_table",
    "run_rate",
    "run_sweep",
    "write_csv",
]
