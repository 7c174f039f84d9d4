"""pointserve against the server a user would write instead, measured side by side in one run.

Starts both on free loopback ports — `pointserve serve` (defaults) and the naive FastAPI server of
`pointserve.bench.naive_server` (one `session.run` per request on the same fp32 ONNX file) — and drives each
with closed-loop clients (aiohttp, one connection each) sending the same 1,024-point float32 clouds, one
concurrency at a time, alternating the servers so both see the same machine. Between steps it measures the raw
runner (no HTTP) at its best batch size, for the "served / raw" ratios. Only one server computes at a time.

    .venv/bin/python scripts/compare_naive_server.py --repository REPO --model mn10 --clients 1,8,32,64

Prints a table per payload (throughput and p99 for both servers, served/raw) and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from pointserve.bench.loadgen import Payload, encode_payload, run_load
from pointserve.bench.loadgen_baseline import RawBaseline
from pointserve.bench.naive_server import __name__ as NAIVE_MODULE
from pointserve.bench.processes import free_port, pointserve_command, server_process
from pointserve.bench.synthetic import make_clouds
from pointserve.repository import Repository


def naive_payloads(clouds) -> list[Payload]:
    import numpy as np

    headers = {"content-type": "application/octet-stream"}
    return [Payload("/predict", np.ascontiguousarray(c, dtype="<f4").tobytes(), headers) for c in clouds]


def step(url: str, payloads: list[Payload], clients: int, seconds: float, name: str) -> dict:
    result = asyncio.run(
        run_load(url, payloads, concurrency=clients, duration_s=seconds, warmup_s=1.0, client="aiohttp")
    )
    row = {
        "server": name,
        "clients": clients,
        "requests_per_s": round(result.requests_per_s, 1),
        "p50_ms": round(result.latency_ms.get("p50", float("nan")), 1),
        "p99_ms": round(result.latency_ms.get("p99", float("nan")), 1),
        "errors": result.errors,
    }
    print(
        f"{name:>18} c={clients:<3} {row['requests_per_s']:7.1f} req/s  p50 {row['p50_ms']:7.1f}  p99 "
        f"{row['p99_ms']:7.1f} ms" + (f"  errors {result.errors}" if result.errors else ""),
        flush=True,
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--config", help="settings file for pointserve serve (default: the defaults)")
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--payloads", default="binary,v2-binary,json,v2-json", help="pointserve encodings")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds measured per step")
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--raw-batches", default="1,2,4,8,16,32", help="batch sizes of the raw runner")
    parser.add_argument("--json", dest="json_out", default="naive-comparison.json")
    args = parser.parse_args()

    onnx_path = Repository(args.repository).open(args.model).path / "fp32.onnx"
    clouds = make_clouds(64, args.points, 3)
    payloads = {kind: [encode_payload(kind, args.model, c) for c in clouds] for kind in args.payloads.split(",")}
    naive = naive_payloads(clouds)
    clients = [int(c) for c in args.clients.split(",")]
    batches = [int(b) for b in args.raw_batches.split(",")]
    raw = RawBaseline(args.repository, args.model, "fp32", num_points=args.points, max_batch=max(batches))
    rows, raw_best = [], []
    ours_port, naive_port = free_port(), free_port()
    naive_command = [sys.executable, "-m", NAIVE_MODULE, str(onnx_path), "--port", str(naive_port)]
    try:
        sweep = raw.sweep(batches, 2.0)
        best = max(sweep, key=sweep.get)
        print("raw runner clouds/s by batch: " + ", ".join(f"{b}: {v:.1f}" for b, v in sweep.items()), flush=True)
        with (
            server_process(naive_command, naive_port, "/health", Path("naive-server.log")) as (_, naive_url),
            server_process(
                pointserve_command(args.repository, ours_port, args.config),
                ours_port,
                "/v2/health/ready",
                Path("pointserve-server.log"),
            ) as (_, ours_url),
        ):
            for count in clients:
                rows.append(step(naive_url, naive, count, args.seconds, "naive"))
                for kind, kind_payloads in payloads.items():
                    rows.append(step(ours_url, kind_payloads, count, args.seconds, f"pointserve {kind}"))
                raw_best.append(raw.clouds_per_s(best, 2.0))
                print(f"{'raw runner':>18} batch {best}: {raw_best[-1]:.1f} clouds/s", flush=True)
    finally:
        raw.close()
    raw_mean = sum(raw_best) / len(raw_best)
    print(f"\nraw runner best (batch {best}), mean of {len(raw_best)} measurements: {raw_mean:.1f} clouds/s\n")
    print(table(rows, clients, list(payloads), raw_mean))
    Path(args.json_out).write_text(
        json.dumps({"raw_sweep": sweep, "raw_best_batch": best, "raw_best": raw_best, "rows": rows}, indent=2)
    )
    return 0


def table(rows: list[dict], clients: list[int], kinds: list[str], raw: float) -> str:
    by = {(r["server"], r["clients"]): r for r in rows}
    head = "| clients | naive req/s | naive p99 ms | " + " | ".join(
        f"pointserve {k} req/s | p99 ms | / raw" for k in kinds
    )
    lines = [head + " |", "|" + "---|" * (3 + 3 * len(kinds))]
    for count in clients:
        n = by[("naive", count)]
        cells = [str(count), f"{n['requests_per_s']:.1f}", f"{n['p99_ms']:.1f}"]
        for kind in kinds:
            r = by[(f"pointserve {kind}", count)]
            cells += [f"{r['requests_per_s']:.1f}", f"{r['p99_ms']:.1f}", f"{r['requests_per_s'] / raw:.0%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
