"""The ``pointserve loadgen`` command line: one load step (the first version's behaviour) or a sweep.

    pointserve loadgen --model shapes-cls --concurrency 1,2,4,8,16,32,64 --duration 5 \\
        --payload binary,json --dataset shapes --csv sweep.csv --json sweep.json --plot sweep.png
    pointserve loadgen --model shapes-cls --request-rate 50,100,200 --cloud-dir examples/clouds

Clouds: ``--dataset NAME`` (its ``--split``, resampled to ``--points``), ``--cloud-dir DIR`` (every
.ply/.pcd/.xyz/.txt/.npy file in it, as they are) or random ellipsoids (the default). For a part
segmentation model the dataset's object category goes with each cloud; otherwise ``--category``.
Importing this module costs only the standard library.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from pointserve.bench.loadgen import PAYLOADS
from pointserve.errors import ConfigError, DataError

CLOUD_SUFFIXES = (".ply", ".pcd", ".xyz", ".txt", ".pts", ".csv", ".npy")


def _list(kind: type):
    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of numbers, got {text!r}") from None
        if not values or min(values) <= 0:
            raise argparse.ArgumentTypeError(f"expected positive values, got {text!r}")
        return values

    return parse


def _payloads(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in PAYLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown payload(s) {unknown or text!r}; choose from {', '.join(PAYLOADS)}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("target")
    target.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL (loopback only by default)")
    target.add_argument("--model", required=True, help="model name")
    target.add_argument("--api-key", default=None, help="bearer token, if the server needs one")
    target.add_argument("--allow-remote", action="store_true", help="allow a non-loopback target")
    target.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds")
    load = parser.add_argument_group("load")
    load.add_argument(
        "--payload", type=_payloads, default=["binary"], help=f"encodings, comma-separated: {', '.join(PAYLOADS)}"
    )
    load.add_argument(
        "--concurrency", type=_list(int), default=None, help="closed-loop clients per step, e.g. 1,2,4,8,16,32,64"
    )
    load.add_argument("--request-rate", type=_list(float), default=None, help="open-loop requests/s per step")
    load.add_argument("--duration", type=float, default=10.0, help="seconds measured per step (after its warm-up)")
    load.add_argument("--requests", type=int, default=None, help="at most this many measured requests per step")
    load.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured load before each step")
    load.add_argument("--max-total-time", type=float, default=900.0, help="stop the sweep after this many seconds")
    data = parser.add_argument_group("clouds")
    data.add_argument("--points", type=int, default=1024, help="points per cloud (random and dataset clouds)")
    data.add_argument("--clouds", type=int, default=64, help="distinct clouds to cycle through")
    data.add_argument("--dataset", help="take clouds from this dataset (e.g. shapes)")
    data.add_argument("--split", default="test", help="dataset split (default test)")
    data.add_argument("--data-root", help="folder of an on-disk dataset")
    data.add_argument("--cloud-dir", help="take clouds from the point-cloud files in this folder")
    data.add_argument("--category", default=None, help="category (part segmentation) when the clouds carry none")
    data.add_argument("--channels", type=int, default=3, help="coordinates per point")
    out = parser.add_argument_group("output")
    out.add_argument("--json", dest="json_out", help="write every step (and the baseline) to this JSON file")
    out.add_argument("--csv", dest="csv_out", help="write one row per step to this CSV file")
    out.add_argument("--plot", help="latency-vs-throughput PNG")
    base = parser.add_argument_group("raw baseline (no HTTP)")
    base.add_argument("--baseline-repository", help="also time the served variant's runner in this process")
    base.add_argument("--baseline-batches", default="1,8,16,32,64", help="batch sizes for the raw baseline")
    base.add_argument("--baseline-threads", type=int, default=None, help="intra-op threads for the raw baseline")
    base.add_argument("--baseline-seconds", type=float, default=3.0, help="seconds per raw batch size")


def load_clouds(args: argparse.Namespace, needs_category: bool) -> tuple[list, list]:
    """(clouds, categories): ``--clouds`` clouds (N, C) float32 and a category per cloud (or None)."""
    import numpy as np

    from pointserve.bench.loadgen import make_clouds

    if args.dataset and args.cloud_dir:
        raise ConfigError("choose --dataset or --cloud-dir, not both")
    category = int(args.category) if args.category is not None and str(args.category).isdigit() else args.category
    if args.cloud_dir:
        from pointserve.data.formats import read_point_cloud

        folder = Path(args.cloud_dir)
        if not folder.is_dir():
            raise DataError(f"{folder}: not a folder")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in CLOUD_SUFFIXES)[: args.clouds]
        if not files:
            raise DataError(f"{folder}: no point-cloud files ({', '.join(CLOUD_SUFFIXES)})")
        clouds = [read_point_cloud(p, channels=args.channels) for p in files]
        return clouds, [category] * len(clouds)
    if args.dataset:
        from pointserve.data import load_dataset

        options: dict[str, Any] = {"num_points": args.points}
        if needs_category:
            options["task"] = "part_segmentation"
        if args.data_root:
            options["root"] = args.data_root
        split = load_dataset(args.dataset, args.split, **options)
        if not len(split):
            raise DataError(f"dataset {args.dataset!r} split {args.split!r} is empty")
        # Spread over the split (splits are often sorted by class), fixed seed.
        picks = np.random.default_rng(0).choice(len(split), min(args.clouds, len(split)), replace=False)
        samples = [split[int(i)] for i in sorted(picks)]
        clouds = [np.ascontiguousarray(s.points[:, : args.channels], dtype=np.float32) for s in samples]
        categories = [int(s.label) for s in samples] if needs_category else [category] * len(samples)
        return clouds, categories
    clouds = make_clouds(args.clouds, args.points, args.channels)
    return clouds, [category] * len(clouds)


def _model_info(url: str, model: str, api_key: str | None) -> dict:
    import httpx

    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(f"{url}/v1/models/{model}", headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise ConfigError(f"{url}: cannot reach the server ({exc})") from None
    if response.status_code != 200:
        raise ConfigError(f"{url}: model {model!r} not served ({response.status_code}: {response.text[:200]})")
    return response.json()


def main_from_args(args: argparse.Namespace) -> int:
    from pointserve.bench.loadgen import check_loopback, encode_payload
    from pointserve.bench.sweep import chart_series, format_table, run_sweep, write_csv

    if args.duration <= 0 or args.points < 1 or args.clouds < 1 or args.max_total_time <= 0:
        raise ConfigError("--duration, --points, --clouds and --max-total-time must be positive")
    if not args.allow_remote:
        check_loopback(args.url)
    concurrencies = args.concurrency or ([] if args.request_rate else [32])
    info = _model_info(args.url, args.model, args.api_key)
    clouds, categories = load_clouds(args, bool(info.get("needs_category")))
    report: dict[str, Any] = {
        "model": args.model,
        "variant": info.get("variant"),
        "backend": info.get("backend"),
        "url": args.url,
        "clouds": {"count": len(clouds), "points": sorted({len(c) for c in clouds})[:10], "source": _source(args)},
        "duration_s_per_step": args.duration,
        "warmup_s_per_step": args.warmup,
    }
    if args.baseline_repository:
        report.update(_baseline(args, info.get("variant")))

    def progress(message: str) -> None:
        print(f"[loadgen] {message}", file=sys.stderr, flush=True)

    steps = []
    for payload_name in args.payload:
        payloads = [encode_payload(payload_name, args.model, c, cat) for c, cat in zip(clouds, categories, strict=True)]
        steps += asyncio.run(
            run_sweep(
                args.url,
                payloads,
                payload_name=payload_name,
                concurrencies=concurrencies,
                rates=args.request_rate or [],
                duration_s=args.duration,
                max_requests=args.requests,
                warmup_s=args.warmup,
                timeout_s=args.timeout,
                api_key=args.api_key,
                max_total_s=args.max_total_time,
                progress=progress,
            )
        )
    print(
        f"=== loadgen: {args.model} ({info.get('variant')}, {info.get('backend')}) at {args.url}, "
        f"{len(clouds)} clouds from {_source(args)}, {args.duration:g} s per step ==="
    )
    print(format_table(steps))
    report["steps"] = [s.row() | {"latency_ms": s.latency_ms, "errors_by_kind": s.errors} for s in steps]
    if "raw_best" in report:
        best = report["raw_best"]["clouds_per_s"]
        for step, row in zip(steps, report["steps"], strict=True):
            row["served_over_raw"] = round(step.throughput_rps / best, 3)
        peak = max(steps, key=lambda s: s.throughput_rps)
        print(
            f"raw best: {best:.1f} clouds/s (batch {report['raw_best']['batch']}); "
            f"served peak {peak.throughput_rps:.1f} req/s at {peak.label} = {peak.throughput_rps / best:.2f} of raw"
        )
    if args.csv_out:
        print(f"CSV written to {write_csv(args.csv_out, steps)}")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"JSON written to {args.json_out}")
    if args.plot:
        from pointserve.bench.plots import latency_throughput_chart

        title = f"{args.model} ({info.get('variant')}, {info.get('backend')}): latency vs throughput"
        path = latency_throughput_chart(chart_series(steps), args.plot, title=title, percentiles=("p90_ms",))
        print(f"Chart written to {path}")
    errors = sum(sum(s.errors.values()) for s in steps)
    if errors:
        print(f"{errors} requests failed", file=sys.stderr)
    return 0 if not errors else 1


def _source(args: argparse.Namespace) -> str:
    if args.cloud_dir:
        return f"folder {args.cloud_dir}"
    if args.dataset:
        return f"dataset {args.dataset}/{args.split}"
    return "random ellipsoids"


def _baseline(args: argparse.Namespace, variant: str | None) -> dict[str, Any]:
    from pointserve.bench.loadgen import raw_throughput

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
    for size, value in raw.items():
        print(f"raw {variant} batch {size:>3}: {value:8.1f} clouds/s", file=sys.stderr)
    return {
        "raw_clouds_per_s": {str(b): round(v, 1) for b, v in raw.items()},
        "raw_best": {"batch": best, "clouds_per_s": round(raw[best], 1)},
    }


__all__ = ["add_arguments", "load_clouds", "main_from_args"]
