"""Where a request's CPU goes: the server's CPU per request, the part of it outside the runner, the client's.

Starts `pointserve serve` (defaults; from another source tree with --source, e.g. a `git worktree` of an older
commit, for a before/after) on a free loopback port, and for each payload and client count drives closed-loop
aiohttp clients while reading the server process's CPU time (/proc) and its batch sizes (/metrics). The raw
runner's CPU per cloud is measured in this process at each batch size, with the server's spin-wait setting
(pointserve serve: off since the admission-control change; ONNX Runtime's default, on, before), so

    outside the runner = server CPU per request - raw CPU per cloud at the server's mean batch size

is what the HTTP layer, decoding, validation, preparation, collation, the batcher and the answer cost.

    .venv/bin/python scripts/profile_request.py --repository REPO --model mn10 [--source /tmp/before]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path

from pointserve.bench.loadgen import encode_payload, run_load
from pointserve.bench.loadgen_baseline import RawBaseline
from pointserve.bench.processes import free_port, pointserve_command, server_process
from pointserve.bench.synthetic import make_clouds


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batch_totals(url: str, model: str) -> tuple[float, float]:
    import httpx

    total = count = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(f'pointserve_batch_size_sum{{model="{model}"}}'):
            total = float(line.rsplit(" ", 1)[1])
        if line.startswith(f'pointserve_batch_size_count{{model="{model}"}}'):
            count = float(line.rsplit(" ", 1)[1])
    return total, count


def raw_cpu_ms_per_cloud(raw: RawBaseline, batches: list[int], seconds: float = 2.0) -> dict[int, float]:
    cpu = {}
    for batch in batches:
        feeds = raw.feeds(batch)
        for _ in range(3):
            raw.runner.infer(feeds)
        before, started, runs = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            raw.runner.infer(feeds)
            runs += 1
        after = resource.getrusage(resource.RUSAGE_SELF)
        used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        cpu[batch] = 1e3 * used / (runs * batch)
    return cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--source", help="run the server from this source tree (PYTHONPATH)")
    parser.add_argument("--payloads", default="binary,v2-binary,json,v2-json")
    parser.add_argument("--clients", default="1,32")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--server-spin-wait", action="store_true", help="the server's runner busy-waits (before)")
    parser.add_argument("--json", dest="json_out", default="request-profile.json")
    args = parser.parse_args()

    batches = [1, 2, 4, 8, 16, 32]
    raw = RawBaseline(
        args.repository,
        args.model,
        "fp32",
        num_points=args.points,
        max_batch=max(batches),
        spin_wait=args.server_spin_wait,
    )
    try:
        raw_cpu = raw_cpu_ms_per_cloud(raw, batches)
    finally:
        raw.close()
    print("raw runner CPU ms per cloud by batch: " + ", ".join(f"{b}: {v:.2f}" for b, v in raw_cpu.items()))
    clouds = make_clouds(64, args.points, 3)
    if args.source:
        os.environ["PYTHONPATH"] = args.source
    port = free_port()
    rows = []
    command = pointserve_command(args.repository, port)
    with server_process(command, port, "/v2/health/ready", Path("profile-server.log")) as (process, url):
        for kind in args.payloads.split(","):
            payloads = [encode_payload(kind, args.model, cloud) for cloud in clouds]
            for count in (int(c) for c in args.clients.split(",")):
                server_before, batches_before = process_cpu_s(process.pid), batch_totals(url, args.model)
                client_before = resource.getrusage(resource.RUSAGE_SELF)
                result = asyncio.run(
                    run_load(url, payloads, concurrency=count, duration_s=args.seconds, warmup_s=0, client="aiohttp")
                )
                client_after = resource.getrusage(resource.RUSAGE_SELF)
                # per answered request: the CPU its refused retries cost (if any) is part of its price
                server_ms = 1e3 * (process_cpu_s(process.pid) - server_before) / max(result.ok, 1)
                clouds_run, batches_run = (
                    a - b for a, b in zip(batch_totals(url, args.model), batches_before, strict=True)
                )
                mean_batch = clouds_run / max(batches_run, 1)
                nearest = min(raw_cpu, key=lambda b: abs(b - mean_batch))
                client_ms = 1e3 * (
                    client_after.ru_utime + client_after.ru_stime - client_before.ru_utime - client_before.ru_stime
                )
                row = {
                    "payload": kind,
                    "clients": count,
                    "requests_per_s": round(result.requests_per_s, 1),
                    "refused": result.errors.get("http_503", 0),
                    "mean_batch": round(mean_batch, 2),
                    "server_cpu_ms_per_request": round(server_ms, 2),
                    "outside_runner_cpu_ms": round(server_ms - raw_cpu[nearest], 2),
                    "client_cpu_ms_per_request": round(client_ms / max(result.ok, 1), 2),
                }
                rows.append(row)
                print(
                    f"{kind:>9} c={count:<3} {row['requests_per_s']:6.1f} req/s  batch {row['mean_batch']:5.2f}  "
                    f"server {row['server_cpu_ms_per_request']:6.2f} cpu-ms/req  outside the runner "
                    f"{row['outside_runner_cpu_ms']:5.2f}  client {row['client_cpu_ms_per_request']:4.2f}  "
                    f"503s {row['refused']}",
                    flush=True,
                )
    Path(args.json_out).write_text(json.dumps({"raw_cpu_ms_per_cloud": raw_cpu, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
