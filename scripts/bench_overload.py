"""The overload benchmark (docs/benchmarking.md, "Overload"): starts `pointserve serve` on a free loopback port,
finds the saturating concurrency, then loads 2x, 4x and 10x that many clients, each with clients that retry a 503
at once and with clients that honour Retry-After, each followed by a recovery step.

    .venv/bin/python scripts/bench_overload.py --repository repository --model shapes-cls [--config serve.yaml]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from pointserve.bench.overload import markdown_table, run_overload
from pointserve.bench.processes import free_port, pointserve_command, server_process
from pointserve.bench.synthetic import make_clouds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--config", help="settings file for the server (default: the defaults)")
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per overload step")
    parser.add_argument("--sweep", default="1,2,4,8,16,32", help="client counts of the saturation sweep")
    parser.add_argument("--factors", default="2,4,10", help="overload factors of the saturating concurrency")
    parser.add_argument("--json", dest="json_out", default="overload.json")
    parser.add_argument("--log", default="overload-server.log", help="the server's log")
    args = parser.parse_args()
    bodies = [np.ascontiguousarray(c, dtype="<f4").tobytes() for c in make_clouds(64, args.points, 3)]
    port = free_port()
    command = pointserve_command(args.repository, port, args.config)
    with server_process(command, port, "/v2/health/ready", Path(args.log)) as (process, url):
        report = run_overload(
            url,
            args.model,
            bodies,
            sweep_clients=tuple(int(c) for c in args.sweep.split(",")),
            factors=tuple(int(f) for f in args.factors.split(",")),
            seconds=args.seconds,
            pid=process.pid,
        )
    table = markdown_table(report)
    print(table)
    Path(args.json_out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
