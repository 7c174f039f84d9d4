"""The measuring commands: ``pointserve bench`` (trtexec-style engine benchmark of a repository variant or a
bare ``.onnx`` / ``.plan``, and ``--compare`` across variants, backends and batch sizes), ``pointserve doctor``
(what this machine runs, and measured throughput) and ``pointserve loadgen`` (a running server under load).
Heavy imports happen in the handlers."""

from __future__ import annotations

import argparse
import shlex
import sys

from pointserve.arguments import int_list
from pointserve.errors import ConfigError

TAG = "pointserve.bench"


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or not all(0 < v < 100 for v in values):
        raise argparse.ArgumentTypeError(f"percentiles must lie in (0, 100), got {text!r}")
    return values


def _positive(kind: type) -> object:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
        return value

    return parse


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_bench(subparsers)
    _register_doctor(subparsers)
    _register_loadgen(subparsers)
    _register_bench_op(subparsers)


def _register_bench(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark an engine like trtexec (throughput, latency percentiles); --compare variants",
        description=(
            "Time a repository variant (MODEL_DIR[:variant]) or a bare .onnx / .plan file on a backend and print "
            "a trtexec-style performance summary. With --compare (or several targets, batch sizes or backends) "
            "every case runs in this one process, interleaved in rounds, and one table of throughput and "
            "manifest accuracy is printed and charted to a PNG."
        ),
    )
    parser.add_argument(
        "targets",
        nargs="+",
        metavar="TARGET",
        help="MODEL_DIR[:variant] (version or model folder), FILE.onnx or FILE.plan",
    )
    parser.add_argument("--backend", help="onnxruntime, tensorrt or torch (comma-separated with --compare)")
    parser.add_argument("--providers", help="ONNX Runtime providers: cpu (default), cuda, tensorrt (comma-separated)")
    parser.add_argument("--batch", type=int_list, default=[1], help="clouds per query; a list compares (default 1)")
    parser.add_argument("--points", type=int, help="points per cloud (default: the model's training size)")
    parser.add_argument("--warmup", type=_positive(float), default=200.0, metavar="MS", help="warm-up (default 200 ms)")
    parser.add_argument(
        "--duration", type=_positive(float), default=3.0, metavar="S", help="measure at least this long (default 3 s)"
    )
    parser.add_argument("--iterations", type=int, default=10, help="measure at least this many queries (default 10)")
    parser.add_argument("--threads", type=int, help="intra-op threads per runner (default: the runtime's choice)")
    parser.add_argument("--streams", type=int, default=1, help="parallel streams, each with its own runner (default 1)")
    parser.add_argument(
        "--percentile", type=_float_list, default=[90.0, 95.0, 99.0], help="latency percentiles (default 90,95,99)"
    )
    parser.add_argument("--export-json", metavar="FILE", help="write options, summary and every query's times")
    parser.add_argument(
        "--compare",
        nargs="?",
        const="all",
        metavar="VARIANTS",
        help="compare variants of a model folder: comma-separated names, or all runnable ones (the default)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds with --compare (default 5)")
    parser.add_argument("--plot", metavar="PNG", help="chart of the comparison (default bench-compare.png)")
    parser.add_argument("--cuda-graph", action="store_true", help="TensorRT: replay each shape as a CUDA graph")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input clouds")
    parser.add_argument(
        "--max-time", type=_positive(float), default=600.0, metavar="S", help="hard limit on measuring (default 600 s)"
    )
    parser.add_argument(
        "--cov-threshold", type=_positive(float), default=1.0, metavar="PCT", help="warn above this CoV (default 1%%)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="with --compare, also each case's full summary")
    parser.set_defaults(handler=run_bench)


def _register_doctor(subparsers: argparse._SubParsersAction) -> None:
    from pointserve.repository.commands import DEFAULT_REPOSITORY

    doctor = subparsers.add_parser(
        "doctor", help="environment report; with a model, its TensorRT lint and measured throughput tables"
    )
    doctor.add_argument(
        "model", nargs="?", help="a model: lint its ONNX variants for TensorRT; with --throughput / --gpu, time them"
    )
    doctor.add_argument("--repository", default=DEFAULT_REPOSITORY)
    doctor.add_argument("--version", type=int)
    doctor.add_argument("--throughput", action="store_true", help="PyTorch eager vs ONNX Runtime CPU variants")
    doctor.add_argument("--gpu", action="store_true", help="build all four TensorRT precisions, check and time them")
    doctor.add_argument("--checkpoint", help="PyTorch checkpoint for the eager row (default: fp32-torch variant)")
    doctor.add_argument("--batches", type=int_list, default=[1, 8, 32], help="comma list (default 1,8,32)")
    doctor.add_argument("--num-points", type=int, default=1024)
    doctor.add_argument("--repeats", type=int, default=10, help="timed calls per cell (median reported)")
    doctor.add_argument("--threads", type=int, help="intra-op threads for ONNX Runtime and torch")
    doctor.add_argument("--cuda-graph", action="store_true", help="TensorRT runners replay CUDA graphs")
    doctor.set_defaults(handler=run_doctor)


def _register_loadgen(subparsers: argparse._SubParsersAction) -> None:
    loadgen = subparsers.add_parser(
        "loadgen",
        help="drive a running server with concurrent clients and report throughput and latency",
        description=(
            "Load a running server like Triton's perf_analyzer: closed-loop concurrency steps or open-loop "
            "request rates; one step per value. (`python -m pointserve.bench.loadgen` is the single-step "
            "version with the interleaved raw baseline and the --client choice.)"
        ),
    )
    from pointserve.bench.loadgen_cli import add_arguments  # stdlib-only at import time

    add_arguments(loadgen)
    loadgen.set_defaults(handler=run_loadgen)


def _register_bench_op(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench-op",
        help="time one operator alone (pcn's continuous convolution; SBNet's sparse blocks against dense)",
        description=(
            "Time an operator on its reference problem in every implementation and evaluation order (and the "
            "exported form in ONNX Runtime), after checking that they all agree: forward and backward medians, "
            "peak memory, FLOP and byte estimates, beside the figures the reference publishes."
        ),
    )
    parser.add_argument(
        "op",
        choices=["pcn-conv", "sbnet"],
        help="pcn-conv (pcn's continuous convolution) or sbnet (SBNet's sparse-block conv / residual block)",
    )
    parser.add_argument("--batch", type=int, default=8, help="clouds (default 8)")
    parser.add_argument("--points", type=int, default=4096, help="points per cloud, in and out (default 4096)")
    parser.add_argument("--edges-per-point", type=int, default=9, help="mean edges per output point (default 9)")
    parser.add_argument("--features", type=int, default=64, help="F_in = F_out (default 64)")
    parser.add_argument("--terms", type=int, default=4, help="edge features T (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random problem (default 0)")
    parser.add_argument("--warmup", type=int, help="untimed calls first (default 10; sbnet: 2 per case)")
    parser.add_argument("--iterations", type=int, default=100, help="timed calls, median reported (default 100)")
    parser.add_argument("--threads", type=int, help="intra-op threads (default: os.cpu_count())")
    parser.add_argument(
        "--implementations",
        default="gather,segment,csr,onnxruntime",
        help="comma list of gather, segment, csr, onnxruntime (default all)",
    )
    parser.add_argument(
        "--orders", default="transform_first,features_first", help="comma list of the evaluation orders (default both)"
    )
    parser.add_argument("--json", metavar="PATH", help="write every figure, the problem and the machine as JSON")
    sbnet = parser.add_argument_group("sbnet")
    sbnet.add_argument(
        "--size", default="200x350", help="a resnet-v2 stage (400x700, 200x350, 100x175, 50x88) or HxW (200x350)"
    )
    sbnet.add_argument("--channels", type=int, help="C, the residual block's channels (default: the stage's)")
    sbnet.add_argument("--bottleneck", type=int, help="K, the bottleneck / conv channels (default: the stage's)")
    sbnet.add_argument("--blocks", help="comma list of square input block sizes BH = BW (default: the stage's sweep)")
    sbnet.add_argument("--tests", default="conv,res", help="comma list of conv, res (default both)")
    sbnet.add_argument(
        "--dense-forms", default="nchw,channels_last,onnxruntime", help="dense baselines to take the best of"
    )
    sbnet.add_argument("--sparsities", help="comma list (default 0.6,0.65,...,0.95,0.99)")
    sbnet.add_argument("--rounds", type=int, default=15, help="interleaved rounds, medians reported (default 15)")
    sbnet.add_argument(
        "--masks",
        default="top-left",
        choices=["top-left", "lidar"],
        help="top-left: SBNet's rectangle per --sparsities; lidar: BEV occupancy of lidar_scenes test scans",
    )
    sbnet.add_argument("--scans", type=int, default=8, help="lidar masks / --network: test scans used (default 8)")
    sbnet.add_argument(
        "--network",
        metavar="CHECKPOINT",
        help="instead of the ops: a bev_seg checkpoint's whole network, sparse vs its dense twin in ONNX Runtime",
    )
    sbnet.add_argument(
        "-o", "--output", default="sbnet-bench", help="folder for sbnet.csv, sbnet-speedup.png, sbnet.json"
    )
    parser.set_defaults(handler=run_bench_op)


def command_line(args: argparse.Namespace) -> str:
    """The command as typed, for the report header and the JSON (sys.argv is not ours inside tests)."""
    argv = sys.argv[1:] if sys.argv and sys.argv[0].endswith(("pointserve", "__main__.py")) else None
    return "pointserve " + shlex.join(argv) if argv else f"pointserve bench {' '.join(args.targets)}"


def run_bench(args: argparse.Namespace) -> int:
    from pointserve.bench.engine_bench import BenchConfig, run_benchmark
    from pointserve.bench.report import device_info, export_json, format_report
    from pointserve.bench.targets import resolve_targets

    if args.iterations < 1 or args.streams < 1 or (args.threads is not None and args.threads < 1):
        raise ConfigError("--iterations, --streams and --threads must be at least 1")
    if args.points is not None and args.points < 1:
        raise ConfigError("--points must be at least 1")
    providers = tuple(p.strip() for p in (args.providers or "").split(",") if p.strip())
    backends = [b.strip() for b in (args.backend or "").split(",") if b.strip()]
    config = BenchConfig(
        batch=args.batch[0],
        num_points=args.points,
        warmup_ms=args.warmup,
        duration_s=args.duration,
        iterations=args.iterations,
        streams=args.streams,
        threads=args.threads,
        percentiles=tuple(args.percentile),
        seed=args.seed,
        max_time_s=args.max_time,
        cov_threshold_pct=args.cov_threshold,
    )
    targets = []
    for spec in args.targets:
        targets += resolve_targets(
            spec,
            variants=args.compare,
            backends=backends or None,
            providers=providers,
            threads=args.threads,
            max_batch=max(args.batch),
            max_points=args.points,
            cuda_graph=args.cuda_graph,
        )
    command = command_line(args)
    print(f"&&&& RUNNING {TAG} # {command}", flush=True)
    compare = args.compare is not None or len(targets) > 1 or len(args.batch) > 1
    if not compare:
        result = run_benchmark(targets[0], config)
        device = device_info(result.gpu_phases or result.target.backend == "tensorrt")
        print(format_report(result, device))
        results = [result]
    else:
        results, device = _compare(args, targets, config)
    if args.export_json:
        path = export_json(args.export_json, results, device, command, mode="compare" if compare else "single")
        print(f"JSON written to {path}")
    print(f"&&&& PASSED {TAG} # {command}", flush=True)
    return 0


def _compare(args: argparse.Namespace, targets: list, config) -> tuple[list, dict]:
    from pointserve.bench.compare import format_table, run_interleaved
    from pointserve.bench.plots import compare_chart
    from pointserve.bench.report import device_info, device_lines, format_report

    def progress(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    results = run_interleaved(targets, args.batch, config, rounds=args.rounds, progress=progress)
    device = device_info(any(r.gpu_phases or r.target.backend == "tensorrt" for r in results))
    if args.verbose:
        for result in results:
            print(format_report(result, device, explain=False))
            print()
    print("\n".join(device_lines(device)))
    print(
        f"=== Comparison: {len(results)} cases, {args.rounds} interleaved rounds, "
        f"{config.duration_s:g} s per case, points {results[0].num_points}, streams {config.streams} ==="
    )
    print(format_table(results))
    unstable = [r for r in results if r.warnings]
    if unstable:
        print(f"[W] {len(unstable)} of {len(results)} cases are unstable (CoV above {config.cov_threshold_pct:g}%)")
    names = sorted({t.label.split(":")[0] for t in targets})
    threads = config.threads if config.threads is not None else "default"
    title = (
        f"{', '.join(names)}: {results[0].num_points} points, threads {threads}, streams {config.streams}, "
        f"{device['cpu']} ({device['usable_cpus']} usable CPUs)"
    )
    path = compare_chart(results, args.plot or "bench-compare.png", title=title)
    print(f"Chart written to {path}")
    return results, device


def run_doctor(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from pointserve.bench import doctor

    console = Console()
    table = Table(title="pointserve doctor")
    table.add_column("item")
    table.add_column("value")
    for key, value in doctor.environment_rows():
        table.add_row(key, value)
    console.print(table)
    model_version = _resolve_model(args) if args.model else None
    if model_version is not None:
        _doctor_tensorrt_lint(console, model_version)
    if not (args.throughput or args.gpu):
        return 0
    if model_version is None:
        raise ConfigError("--throughput and --gpu need a model (a version folder or a name)")
    card = model_version.card
    max_batch = max(args.batches)
    if args.throughput:
        runners = doctor.cpu_runners(model_version, args.checkpoint, None, max_batch, args.num_points, args.threads)
        try:
            rows = doctor.measure_throughput(runners, args.batches, args.num_points, card=card, repeats=args.repeats)
        finally:
            for runner in runners.values():
                runner.close()
        title = f"CPU throughput, N={args.num_points}, one process, median of {args.repeats}"
        console.print(doctor.throughput_table(rows, title))
    if args.gpu:
        _doctor_gpu(args, console, model_version, max_batch)
    return 0


def _doctor_tensorrt_lint(console, model_version) -> None:
    """The TensorRT-compatibility lint of every ONNX variant of the version (what export checks on fp32)."""
    from pointserve.export.trt_lint import lint_graph
    from pointserve.export.variants import CPU_INT8

    console.print(f"TensorRT lint of {model_version.name} v{model_version.version}:", highlight=False)
    for variant in model_version.manifest.variants:
        if variant.file.endswith(".onnx"):
            report = lint_graph(model_version.variant_path(variant.name))
            lines = report.summary().splitlines()
            if variant.name == CPU_INT8:  # its com.microsoft QLinear ops are the point of it: the count is enough
                lines = [f"{lines[0]} (ONNX Runtime's CPU form, never built for TensorRT)"]
            for line in lines:
                console.print(f"  {variant.name}: {line}", markup=False, highlight=False)


def _resolve_model(args: argparse.Namespace):
    from pointserve.repository.commands import resolve_model_version

    return resolve_model_version(args.model, args.repository, args.version)


def _doctor_gpu(args: argparse.Namespace, console, model_version, max_batch: int) -> None:
    from pointserve.bench import doctor
    from pointserve.engines.build import build_tensorrt_plans
    from pointserve.engines.selection import create_runner
    from pointserve.engines.tensorrt.plan import TENSORRT_PRECISIONS, profile_from_flags, tensorrt_variant_name

    card = model_version.card
    profile = profile_from_flags(
        card.num_points,
        inputs=model_version.manifest.inputs,
        max_batch=max_batch,
        opt_points=args.num_points,
        max_points=max(args.num_points, card.num_points),
    )
    steps = build_tensorrt_plans(model_version, TENSORRT_PRECISIONS, profile, log=console.print)
    for step in steps:
        console.print(f"{step.variant}: {step.action} {f'in {step.seconds:.1f} s' if step.seconds else ''}")
    plans = [tensorrt_variant_name(p) for p in TENSORRT_PRECISIONS]
    for name, diff, agreement in doctor.check_plans_against_fp32(model_version, plans, args.num_points):
        console.print(f"{name}: max |Δlogit| vs fp32 ONNX = {diff:.3e}, argmax agreement {100 * agreement:.2f}%")
    runners = {
        name: create_runner(model_version, name, backend="tensorrt", max_batch=max_batch, cuda_graph=args.cuda_graph)
        for name in plans
    }
    try:
        for runner in runners.values():
            runner.load()
        rows = doctor.measure_throughput(runners, args.batches, args.num_points, card=card, repeats=args.repeats)
    finally:
        for runner in runners.values():
            runner.close()
    title = f"TensorRT throughput (host to host), N={args.num_points}, median of {args.repeats}"
    console.print(doctor.throughput_table(rows, title))


def run_loadgen(args: argparse.Namespace) -> int:
    from pointserve.bench.loadgen_cli import main_from_args

    return main_from_args(args)


def run_bench_op(args: argparse.Namespace) -> int:
    if args.op == "sbnet":
        from pointserve.bench.sbnet_bench import run as run_sbnet

        args.warmup = 2 if args.warmup is None else args.warmup
        return run_sbnet(args)
    from pointserve.bench.op_bench import run

    args.warmup = 10 if args.warmup is None else args.warmup
    return run(args)


__all__ = ["register", "run_bench", "run_bench_op", "run_doctor", "run_loadgen"]
