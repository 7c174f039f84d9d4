"""``pointserve bench-op pcn-conv``: pcn's continuous convolution alone, on the problem of pcn's README.

Problem (the README's GTX-1080Ti row, N(FΘ)-JIT): B clouds of P points in and out (N = B·P), D edges per output
point on average, F_in = F_out = F, T edge features. D·N pairs (i, j) are drawn uniformly by a seeded numpy
Generator, j in i's own cloud (block-diagonal); **duplicate pairs are removed** (about D/(2P) of them: a
neighbourhood lists a neighbour once), so E is a little under D·N. Rows are padded to the largest degree K with
the sentinel N. Edge features are stand-ins for the normalised hat weights (uniform [0, 1) over the row degree,
zero in padding); their values do not change the speed.

Cases: torch gather, segment and csr in both orders, and "onnxruntime": the gather form exported with
``torch.onnx.export(..., dynamo=True)`` (TorchScript exporter if that fails). Before any timing every output is
compared with torch's gather transform-first output; a difference over 1e-4 raises.

Timing: ``time.perf_counter`` around each call after the warm-up; medians, every call in the JSON. *forward*: the
convolution on fixed inputs under ``torch.no_grad``. *backward*: ``out.backward(grad)`` alone (kernel and feature
gradients, fixed random ``grad``) after a fresh forward that runs outside the timed region, like the reference's
separate backward figure.

Memory: peak resident-set growth (MB = 2**20 B) over the timed calls. Every case runs in a forked child of a fresh
worker that has imported torch and loaded the inputs but run no op (a clean heap, no forked OpenMP pool). The child
warms up, returns freed heap to the OS (``malloc_trim``), restarts the peak (``/proc/self/clear_refs`` 5), reads
VmRSS, runs the timed calls and reports VmHWM - VmRSS: inputs excluded; outputs, intermediates and (backward) the
saved activations and gradients included. Not ``getrusage().ru_maxrss``: Linux carries the parent's high-water mark
into it across fork + exec (a child of a 300 MB process reads 319 MB before allocating). onnxruntime's CPU arena
would keep the warm-up's memory in the baseline, so its peak comes from a second session with the arena off (one
warm-up, up to three runs); its times from a default session. Linux only (/proc, fork).

FLOPs (useful work: gather's padded slots are not counted)::

    transform_first: N_in·F_in·T·F_out·2 (dense) + E·T·F_out·2 (sparse)
    features_first:  E·T·F_in·2 (sparse) + N_out·T·F_in·F_out·2 (dense)
    backward:        2·dense + sparse (both gradients of the dense product; the edge features need none)

Bytes moved (forward; float32 4 B, int64 8 B): features read and output written; the edge data (padded layout
N·K·(8 + 4T); segment and csr also derive the edge list every call, 2·E·(16 + 4T), and csr its matrix, 2·E·T·12);
2x every materialised intermediate (written, read); 3x every gathered tensor (source rows read, written, read); 1x
the dense rows csr's sparse product reads per non-zero. :func:`bytes_moved` lists each form's tensors.

Shapes:
    - **features:** (N_in, F_in) float32
    - **neighbors:** (N_out, K) int64 in [0, N_in]; N_in marks padding
    - **edge features:** (N_out, K, T) float32, zero in padding
    - **kernel:** (T, F_in, F_out) float32
    - **output, grad:** (N_out, F_out) float32
"""

from __future__ import annotations

import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pointserve.bench.peak_memory import measure_calls, run_in_forked_child, timed
from pointserve.errors import ConfigError

# pointserve.models.pcn.conv's names, repeated so that the parent process never imports torch (the worker checks).
TORCH_IMPLEMENTATIONS = ("gather", "segment", "csr")
IMPLEMENTATIONS = (*TORCH_IMPLEMENTATIONS, "onnxruntime")
ORDERS = ("transform_first", "features_first")
TOLERANCE = 1e-4
INPUT_NAMES = ("features", "neighbors", "edge_features")
REFERENCE_LABEL = "reference: pcn README, GTX-1080Ti, N(FΘ)-JIT — forward 2.68 ms / 40 MB, backward 4.09 ms / 49 MB "
REFERENCE_LABEL += "(not measured here)"
REFERENCE = {"label": REFERENCE_LABEL, "measured": False, "forward_ms": 2.68, "backward_ms": 4.09}
REFERENCE |= {"forward_peak_mb": 40.0, "backward_peak_mb": 49.0}
GOAL = {"forward_ms": 15.0, "backward_ms": 30.0, "peak_mb": 100.0, "threads": 2}
GOAL_LINE = "goal for the fastest CPU form on 2 cores: forward ≤ 15 ms, backward ≤ 30 ms, peak ≤ 100 MB"
METHOD = {
    "timing": "time.perf_counter per call after warm-up; medians; every call in rows[*].*_times_ms",
    "forward": "the convolution on fixed inputs under torch.no_grad (onnxruntime: InferenceSession.run)",
    "backward": "out.backward(grad) alone (kernel and feature gradients); its forward runs untimed before it",
    "memory": "peak RSS growth (VmHWM - VmRSS after warm-up, malloc_trim and a peak reset) in a forked child per "
    "case of a fresh worker; inputs excluded; onnxruntime: a second session with the CPU arena off",
    "flops": "transform_first N_in·F_in·T·F_out·2 + E·T·F_out·2; features_first E·T·F_in·2 + N_out·T·F_in·F_out·2; "
    "backward 2·dense + sparse",
    "bytes": "features + output + edge data + 2x intermediates + 3x gathered tensors + 1x the rows csr streams",
    "edges": "D·N uniform pairs within each cloud, duplicates removed, rows padded to K with the sentinel N",
}


@dataclass(frozen=True)
class Sizes:
    batch: int
    points: int
    n: int  # N_in = N_out
    edges_drawn: int  # D·N
    edges: int  # E, duplicates removed
    max_degree: int  # K
    empty_rows: int
    features: int  # F_in = F_out
    terms: int  # T


def build_problem(batch: int, points: int, edges_per_point: int, features: int, terms: int, seed: int):
    """The problem of the module docstring as numpy arrays: ``(Sizes, arrays)``."""
    rng = np.random.default_rng(seed)
    n = batch * points
    rows = rng.integers(0, n, size=edges_per_point * n)
    cols = rows // points * points + rng.integers(0, points, size=rows.size)  # the row's own cloud
    key = np.unique(rows * n + cols)  # drops duplicates and sorts by (row, col): the CSR order of edges()
    rows, cols = key // n, key % n
    degree = np.bincount(rows, minlength=n)
    k = max(int(degree.max()), 1)
    slots = np.arange(rows.size) - (np.cumsum(degree) - degree)[rows]  # rank of each edge within its row
    neighbors = np.full((n, k), n, dtype=np.int64)
    neighbors[rows, slots] = cols
    edge_features = np.zeros((n, k, terms), dtype=np.float32)
    edge_features[rows, slots] = rng.uniform(0.0, 1.0, (rows.size, terms)).astype(np.float32) / degree[rows, None]
    bound = math.sqrt(6.0 / (terms * features + features))  # ContinuousConv's Glorot bound
    arrays = {"neighbors": neighbors, "edge_features": edge_features}
    arrays["features"] = rng.standard_normal((n, features), dtype=np.float32)
    arrays["kernel"] = rng.uniform(-bound, bound, (terms, features, features)).astype(np.float32)
    arrays["grad_output"] = rng.standard_normal((n, features), dtype=np.float32)
    sizes = Sizes(batch, points, n, edges_per_point * n, int(rows.size), k, int((degree == 0).sum()), features, terms)
    return sizes, arrays


def flops(s: Sizes, order: str, backward: bool = False) -> float:
    n_in = n_out = s.n
    f_in = f_out = s.features
    if order == "transform_first":
        dense, sparse = n_in * f_in * s.terms * f_out * 2.0, s.edges * s.terms * f_out * 2.0
    else:
        dense, sparse = n_out * s.terms * f_in * f_out * 2.0, s.edges * s.terms * f_in * 2.0
    return (2 if backward else 1) * dense + sparse


def bytes_moved(s: Sizes, implementation: str, order: str) -> float:
    """The forward traffic estimate of the module docstring; the lists hold element counts."""
    n, e, k, f, t = s.n, s.edges, s.max_degree, s.features, s.terms
    edges = n * k * (8 + 4 * t)  # the padded layout, read
    tf, streamed, gathers = order == "transform_first", 0, []
    if implementation in ("gather", "onnxruntime"):  # transformed + its padded copy + gathered, or the mirror
        dense, gathers = (
            ([n * t * f, (n + 1) * t * f], [n * k * t * f]) if tf else ([(n + 1) * f, n * t * f], [n * k * f])
        )
    elif implementation == "segment":  # transformed, messages and transformed[cols]; or messages, summed, x[cols]
        edges += 2 * e * (16 + 4 * t)
        dense, gathers = ([n * t * f, e * f], [e * t * f]) if tf else ([e * t * f, n * t * f], [e * f])
    else:  # csr: transformed and its term-major copy, or the summed features; no gathered tensor
        edges += 2 * e * (16 + 4 * t) + 2 * e * t * 12
        dense, streamed = ([n * t * f, t * n * f] if tf else [n * t * f]), e * t * f
    return 4.0 * 2 * n * f + edges + 4.0 * (2 * sum(dense) + 3 * sum(gathers) + streamed)


# -- the worker: one process, one forked child per step --------------------------------------------------------
def _tensors(arrays: dict[str, np.ndarray]):
    import torch

    from pointserve.models.pcn.conv import Neighbourhood

    x, neighbors, edge_features = (torch.from_numpy(arrays[name]) for name in INPUT_NAMES)
    return x, Neighbourhood(neighbors, edge_features, len(x)), torch.from_numpy(arrays["kernel"])


def _session(path: Path, threads: int, arena: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_cpu_mem_arena, options.log_severity_level = arena, 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _export(arrays: dict[str, np.ndarray], order: str, path: Path) -> str:
    """The gather form (kernel a parameter; features, neighbors, edge features the inputs) to ONNX; the exporter."""
    import torch

    from pointserve.export.onnx_export import _quiet_exporter
    from pointserve.models.pcn.conv import Neighbourhood, continuous_conv

    class GatherConv(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.kernel = torch.nn.Parameter(torch.from_numpy(arrays["kernel"]).clone())

        def forward(self, features, neighbors, edge_features):
            nb = Neighbourhood(neighbors, edge_features, features.shape[0])
            return continuous_conv(features, nb, self.kernel, order, "gather")

    inputs = tuple(torch.from_numpy(arrays[name]) for name in INPUT_NAMES)
    names = {"input_names": list(INPUT_NAMES), "output_names": ["output"]}
    try:
        with _quiet_exporter(), torch.no_grad():
            torch.onnx.export(GatherConv().eval(), inputs, str(path), dynamo=True, external_data=False, **names)
        return "dynamo"
    except Exception as exc:  # the exporters raise many unrelated types
        print(f"[bench-op] dynamo export failed ({exc!r:.200}); TorchScript exporter instead", file=sys.stderr)
        with _quiet_exporter(), torch.no_grad():
            torch.onnx.export(GatherConv().eval(), inputs, str(path), dynamo=False, **names)
        return "torchscript"


def _verify(plan: dict, arrays: dict, directory: Path) -> dict[str, Any]:
    import onnx
    import onnxruntime
    import torch

    from pointserve.models.pcn.conv import continuous_conv

    torch.set_num_threads(plan["threads"])
    x, nb, kernel = _tensors(arrays)
    diffs, exporters = {}, {}
    with torch.no_grad():
        reference = continuous_conv(x, nb, kernel, "transform_first", "gather").numpy()
        for case in plan["cases"]:
            impl, order = case["implementation"], case["order"]
            if impl == "onnxruntime":
                exporters[order] = _export(arrays, order, directory / f"gather_{order}.onnx")
                feeds = {name: arrays[name] for name in INPUT_NAMES}
                out = _session(directory / f"gather_{order}.onnx", plan["threads"]).run(None, feeds)[0]
            else:
                out = continuous_conv(x, nb, kernel, order, impl).numpy()
            same_shape = out.shape == reference.shape
            diffs[f"{impl} {order}"] = float(np.abs(out - reference).max()) if same_shape else math.inf
    versions = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__}
    passed = all(d <= TOLERANCE for d in diffs.values())  # a NaN fails too
    result = {"reference": "torch gather transform_first", "tolerance": TOLERANCE, "max_abs_diff": diffs}
    return result | {"passed": passed, "exporters": exporters, "versions": versions}


def _case(plan: dict, arrays: dict, case: dict, directory: Path) -> dict[str, Any]:
    import torch

    from pointserve.models.pcn.conv import continuous_conv

    threads, warmup, iterations = plan["threads"], plan["warmup"], plan["iterations"]
    torch.set_num_threads(threads)
    impl, order = case["implementation"], case["order"]
    if impl == "onnxruntime":
        path, feeds = directory / f"gather_{order}.onnx", {name: arrays[name] for name in INPUT_NAMES}
        session = _session(path, threads)
        forward = measure_calls(timed(lambda: session.run(None, feeds)), warmup, iterations)
        del session
        lean = _session(path, threads, arena=False)  # memory only: an arena would hide the warm-up's allocations
        memory = measure_calls(timed(lambda: lean.run(None, feeds)), 1, min(iterations, 3))
        return {"forward": forward | {"peak_mb": memory["peak_mb"], "peak_reset": memory["peak_reset"]}}
    x, nb, kernel = _tensors(arrays)
    prepare_ms = _prepare_ms(arrays, impl, order)
    with torch.no_grad():
        forward = measure_calls(timed(lambda: continuous_conv(x, nb, kernel, order, impl)), warmup, iterations)
    x_grad, k_grad = x.clone().requires_grad_(), kernel.clone().requires_grad_()
    grad = torch.from_numpy(arrays["grad_output"])

    def clear() -> None:  # last call's gradients out of the baseline
        x_grad.grad = k_grad.grad = None

    def backward() -> float:
        clear()
        out = continuous_conv(x_grad, nb, k_grad, order, impl)
        start = time.perf_counter()
        out.backward(grad)
        return time.perf_counter() - start

    backward_times = measure_calls(backward, warmup, iterations, settle=clear)
    return {"forward": forward, "backward": backward_times, "prepare_ms": prepare_ms}


def _prepare_ms(arrays: dict, impl: str, order: str, repeats: int = 5) -> float:
    """Median ms to derive what the sparse forms keep per neighbourhood (edge list; csr: the matrix and its
    transpose), paid once per neighbourhood and batch, not per convolution: outside the fwd / bwd times."""
    if impl == "gather":
        return 0.0
    times = []
    for _ in range(repeats):
        _, nb, _ = _tensors(arrays)
        start = time.perf_counter()
        nb.sparse(order) if impl == "csr" else nb.edges()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _worker(directory: Path) -> int:
    plan = json.loads((directory / "plan.json").read_text())
    with np.load(directory / "problem.npz") as problem:
        arrays = {name: problem[name] for name in problem.files}
    # Imported once, before any fork; no op runs here (an OpenMP pool must not be forked).
    import onnxruntime  # noqa: F401
    import torch  # noqa: F401
    import torch.fx.experimental.symbolic_shapes  # noqa: F401  (the first backward's lazy import: ~1 s)

    from pointserve.models.pcn import conv

    if (conv.IMPLEMENTATIONS, conv.ORDERS) != (TORCH_IMPLEMENTATIONS, ORDERS):
        raise RuntimeError("pointserve.models.pcn.conv's implementations changed; update op_bench")
    gc.freeze()  # the children's gc.collect skips what is imported: fast, and no copy-on-write of every object
    steps = [("verify", "verification", lambda: _verify(plan, arrays, directory))]
    for i, case in enumerate(plan["cases"]):
        label = f"{case['implementation']} {case['order']}"
        steps.append((f"case{i}", label, lambda case=case: _case(plan, arrays, case, directory)))
    start = time.perf_counter()
    for i, (name, label, step) in enumerate(steps):
        print(f"[bench-op] {time.perf_counter() - start:6.1f} s: {i}/{len(steps) - 1} {label}", file=sys.stderr)
        code = run_in_forked_child(step, directory / f"{name}.json")
        if code != 0:
            print(f"[bench-op] {label} failed (exit status {code})", file=sys.stderr)
            return 1
        if name == "verify" and not json.loads((directory / "verify.json").read_text())["passed"]:
            return 3  # wrong outputs are not timed; the parent reports the differences
    return 0


# -- the command --------------------------------------------------------------------------------------------
def _choices(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names or any(name not in allowed for name in names):
        raise ConfigError(f"{flag} takes a comma list of {', '.join(allowed)}; got {text!r}")
    return [name for name in allowed if name in names]


def require_verified(verification: dict[str, Any]) -> None:
    """Raise, naming every form over the tolerance, unless every output matched the reference."""
    bad = {k: v for k, v in verification["max_abs_diff"].items() if not v <= verification["tolerance"]}
    if bad or not verification["passed"]:
        raise RuntimeError(f"outputs differ from {verification['reference']} by more than {TOLERANCE:g}: {bad}")


def _measure_all(plan: dict, arrays: dict[str, np.ndarray]) -> tuple[dict, list[dict]]:
    """Run the worker on ``plan``: the verification and every case's measurements."""
    with tempfile.TemporaryDirectory(prefix="pointserve-bench-op-") as tmp:
        directory = Path(tmp)
        np.savez(directory / "problem.npz", **arrays)
        (directory / "plan.json").write_text(json.dumps(plan))
        root = str(Path(__file__).resolve().parents[2])  # the worker imports this same pointserve
        env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        code = subprocess.run([sys.executable, "-m", "pointserve.bench.op_bench", tmp], env=env).returncode
        if (directory / "verify.json").exists():
            require_verified(json.loads((directory / "verify.json").read_text()))
        if code != 0:
            raise RuntimeError(f"the benchmark worker failed (exit status {code}); its error is printed above")
        verification = json.loads((directory / "verify.json").read_text())
        return verification, [json.loads((directory / f"case{i}.json").read_text()) for i in range(len(plan["cases"]))]


def _row(case: dict, result: dict, s: Sizes) -> dict[str, Any]:
    impl, order = case["implementation"], case["order"]
    fwd, bwd = result["forward"], result.get("backward")
    row = {"implementation": impl, "order": order, "backend": "onnxruntime" if impl == "onnxruntime" else "torch"}
    row["forward_ms"] = statistics.median(fwd["times_ms"])
    row["prepare_ms"] = result.get("prepare_ms")
    row["backward_ms"] = statistics.median(bwd["times_ms"]) if bwd else None
    row["forward_peak_mb"], row["backward_peak_mb"] = fwd["peak_mb"], bwd["peak_mb"] if bwd else None
    row["forward_gflop"], row["backward_gflop"] = flops(s, order) / 1e9, flops(s, order, True) / 1e9 if bwd else None
    row["forward_mb_moved"] = bytes_moved(s, impl, order) / 2**20
    row["forward_gflops"] = row["forward_gflop"] / row["forward_ms"] * 1e3
    row["backward_gflops"] = row["backward_gflop"] / row["backward_ms"] * 1e3 if bwd else None
    row["forward_gbps"] = bytes_moved(s, impl, order) / 1e9 / row["forward_ms"] * 1e3
    row["peak_reset"] = fwd["peak_reset"] and (bwd is None or bwd["peak_reset"])
    row["forward_times_ms"], row["backward_times_ms"] = fwd["times_ms"], bwd["times_ms"] if bwd else None
    return row


def _goal(rows: list[dict], threads: int) -> dict[str, Any]:
    """The goal against the torch form with the fastest forward (the goal has a backward figure; ORT has none)."""
    trainable = [r for r in rows if r["backward_ms"] is not None]
    if not trainable:
        return GOAL | {"line": GOAL_LINE, "row": None, "met": None}
    best = min(trainable, key=lambda r: r["forward_ms"])
    checks = {
        "forward": best["forward_ms"] <= GOAL["forward_ms"],
        "backward": best["backward_ms"] <= GOAL["backward_ms"],
    }
    checks["peak"] = max(best["forward_peak_mb"], best["backward_peak_mb"]) <= GOAL["peak_mb"]
    met = {"checks": checks, "met": all(checks.values()), "measured_threads": threads}
    return GOAL | {"line": GOAL_LINE, "row": f"{best['implementation']} {best['order']}"} | met


# (header, row key, decimals) of the table's figures; the reference row fills those it publishes.
COLUMNS = [("prepare ms", "prepare_ms", 2), ("fwd ms", "forward_ms", 2), ("bwd ms", "backward_ms", 2)]
COLUMNS += [("fwd peak MB", "forward_peak_mb", 1)]
COLUMNS += [("bwd peak MB", "backward_peak_mb", 1), ("GFLOP fwd", "forward_gflop", 3)]
COLUMNS += [("MB moved fwd", "forward_mb_moved", 1), ("GFLOP/s fwd", "forward_gflops", 1)]
COLUMNS += [("GFLOP/s bwd", "backward_gflops", 1), ("GB/s fwd", "forward_gbps", 2)]


def _fmt(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console.width = 200  # a pipe or a file: the wide table unwrapped
    p, st = report["problem"], report["settings"]
    title = (
        f"pcn-conv: B={p['batch']} × {p['points']} points (N={p['n']}), E={p['edges']} (K={p['max_degree']}), "
        f"F={p['features']}, T={p['terms']}; threads {st['threads']}, median of {st['iterations']} after "
        f"{st['warmup']} warm-up"
    )
    table = Table(title=title, caption=REFERENCE_LABEL)
    table.add_column("form")
    table.add_column("order")
    for header, _, _ in COLUMNS:
        table.add_column(header, justify="right")
    for r in report["rows"]:
        table.add_row(r["implementation"], r["order"], *(_fmt(r[key], digits) for _, key, digits in COLUMNS))
    table.add_section()
    cells = (_fmt(REFERENCE[key], digits) if key in REFERENCE else "" for _, key, digits in COLUMNS)
    table.add_row("reference: pcn README, GTX-1080Ti", "N(FΘ)-JIT, not measured here", *cells, style="dim")
    console.print(table)
    print(f"memory: {METHOD['memory']}")
    goal = report["goal"]
    if goal["row"] is None:
        print(f"{GOAL_LINE}: no torch form measured")
        return
    verdict = ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in goal["checks"].items())
    threads = "" if goal["measured_threads"] == 2 else f" (measured with --threads {goal['measured_threads']}, not 2)"
    print(f"{GOAL_LINE}: fastest form {goal['row']} ({verdict}) -> {'MET' if goal['met'] else 'NOT met'}{threads}")


def run(args) -> int:
    """The ``bench-op pcn-conv`` handler: build the problem, verify, measure, print, write ``--json``."""
    size_args = {k: getattr(args, k) for k in ("batch", "points", "edges_per_point", "features", "terms")}
    threads = args.threads if args.threads is not None else os.cpu_count() or 1
    if min(*size_args.values(), args.iterations, threads) < 1 or args.warmup < 0:
        raise ConfigError("sizes, --iterations and --threads must be at least 1, --warmup at least 0")
    implementations = _choices(args.implementations, IMPLEMENTATIONS, "--implementations")
    orders = _choices(args.orders, ORDERS, "--orders")
    cases = [{"implementation": i, "order": o} for i in implementations for o in orders]
    sizes, arrays = build_problem(**size_args, seed=args.seed)
    plan = {"cases": cases, "threads": threads, "warmup": args.warmup, "iterations": args.iterations}
    verification, results = _measure_all(plan, arrays)
    rows = [_row(case, result, sizes) for case, result in zip(cases, results, strict=True)]
    from pointserve.bench.report import device_info

    problem = asdict(sizes) | {"n_in": sizes.n, "n_out": sizes.n, "edges_per_point": args.edges_per_point}
    problem |= {"seed": args.seed, "duplicates_removed": sizes.edges_drawn - sizes.edges, "block_diagonal": True}
    report = {"op": "pcn-conv", "problem": problem | {"padded_slots": sizes.n * sizes.max_degree}, "settings": plan}
    report["machine"] = device_info(False) | verification["versions"]
    report["method"] = METHOD | {"exporters": verification["exporters"]}
    report |= {"verification": verification, "rows": rows, "reference": REFERENCE, "goal": _goal(rows, threads)}
    _print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(_worker(Path(sys.argv[1])))
