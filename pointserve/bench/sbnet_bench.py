"""``pointserve bench-op sbnet``: SBNet's sparse-block convolution and residual block against the best dense form.

Problem (SBNet's benchmark): batch 1; a top-left rectangle of ones covering ``1 - sparsity`` of the H x W mask
(side ``sqrt(1 - sparsity)`` of each axis), sparsity 0.6, 0.65, ..., 0.95, 0.99; blocks active by average
pooling with ``tol`` 0.05. Stages (resnet-v2, C -> K): 400x700 96->24, 200x350 192->48 (the default),
100x175 256->64, 50x88 384->96. Tests: ``conv`` (3x3, K -> K) and ``res`` (the bottleneck C -> K -> K -> C).
Square input blocks are swept per stage (``BH = BW``, the tile plus the 2-pixel halo); every block size is a
row of the CSV, and the summary takes, per sparsity, the block size with the best time *including* the mask
reduction and the indices.

Dense baseline: the best of three forms at the same thread count — PyTorch NCHW, PyTorch channels-last, and
the dense twin exported to ONNX and run in ONNX Runtime. Sparse: the PyTorch ops of
:mod:`pointserve.models.sbnet.ops` in their inference form (``inplace``: written into the layer's output rows,
which for ``res`` are its input rows; the active tiles are restored outside the timed region so that the
values stay the same call after call), timed twice: with precomputed indices (SBNet's own figure) and with
``reduce_mask`` and the index building on the host inside the timed call (what serving pays).

Before any timing every sparse case is checked against the dense output on the active tiles and against its
input (``res``) or zero (``conv``) elsewhere; a difference over 1e-4 relative to the output's scale raises.

Timing: rounds; each round runs every case once, in an order shuffled per round (seeded), so that dense and
sparse runs interleave and drift on a shared machine hits both; medians and the min-max spread over rounds.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pointserve.errors import ConfigError
from pointserve.geometry.blocks import block_geometry, sparse_block_inputs

STAGES: dict[str, tuple[int, int, int, int]] = {
    "400x700": (400, 700, 96, 24),
    "200x350": (200, 350, 192, 48),
    "100x175": (100, 175, 256, 64),
    "50x88": (50, 88, 384, 96),
}
BLOCK_SIZES: dict[str, tuple[int, ...]] = {
    "400x700": (11, 15, 19, 23, 27, 31),
    "200x350": (7, 11, 15, 19, 23, 27),
    "100x175": (5, 7, 9, 13, 17),
    "50x88": (5, 7, 9, 13, 19),
}
SPARSITIES = (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99)
TESTS = ("conv", "res")
DENSE_FORMS = ("nchw", "channels_last", "onnxruntime")
TOL = 0.05
VERIFY_TOLERANCE = 1e-4
GOAL = {"test": "res", "stage": "200x350", "speedup_at": {0.9: 2.0, 0.99: 8.0}, "including_indices": True}
CSV_COLUMNS = (
    "test", "H", "W", "C", "K", "BH", "BW", "sparsity", "block_sparsity", "dense_time", "sparse_time", "speedup",
    "sparse_time_with_indices", "speedup_with_indices", "dense_form", "dense_spread", "sparse_spread",
    "sparse_with_indices_spread", "blocks", "mask",
)  # fmt: skip


@dataclass(frozen=True)
class Problem:
    height: int
    width: int
    channels: int
    bottleneck: int
    label: str

    def channels_for(self, test: str) -> tuple[int, int]:
        """(input, output) channels of the test's op: ``conv`` is SBNet's 3x3 K -> K, ``res`` C -> C."""
        return (self.bottleneck, self.bottleneck) if test == "conv" else (self.channels, self.channels)


def top_left_mask(height: int, width: int, sparsity: float) -> np.ndarray:
    """SBNet's benchmark mask: ones on a top-left rectangle of ``sqrt(1 - sparsity)`` of each side."""
    mask = np.zeros((1, height, width), dtype=np.float32)
    side = math.sqrt(1.0 - sparsity)
    mask[0, : max(1, round(side * height)), : max(1, round(side * width))] = 1.0
    return mask


def lidar_masks(height: int, width: int, scans: int, cell_m: float = 0.2) -> list[tuple[str, float, np.ndarray]]:
    """BEV masks of real ``lidar_scenes`` test scans: the pillar occupancy over an H x W grid of ``cell_m``
    cells centred on the sensor, dilated by one cell (the mask SBNet is driven by). (label, sparsity, mask)."""
    from scipy import ndimage

    from pointserve.data.lidar_scenes import generate_scan
    from pointserve.geometry.grids import pillar_grid

    half_x, half_y = width * cell_m / 2, height * cell_m / 2
    masks = []
    for index in range(scans):
        points = generate_scan(0, index, split="test")[0]
        occupancy = pillar_grid(points, (-half_x, half_x), (-half_y, half_y), cell_m).occupancy
        mask = ndimage.binary_dilation(occupancy, iterations=1).astype(np.float32)[None]
        masks.append((f"lidar-{index}", round(1.0 - float(mask.mean()), 4), mask))
    return masks


def top_left_masks(height: int, width: int, sparsities) -> list[tuple[str, float, np.ndarray]]:
    return [(f"top-left-{s:g}", s, top_left_mask(height, width, s)) for s in sparsities]


def _randomised(module):
    """Random eval-mode batch-norm statistics, so that the check sees non-trivial normalisation."""
    import torch

    generator = torch.Generator().manual_seed(0)
    for sub in module.modules():
        if isinstance(sub, torch.nn.BatchNorm2d):
            for tensor, (low, high) in (
                (sub.running_mean, (-0.5, 0.5)),
                (sub.running_var, (0.5, 1.5)),
                (sub.weight.data, (0.5, 1.5)),
                (sub.bias.data, (-0.2, 0.2)),
            ):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
    return module.eval()


def build_op(test: str, problem: Problem):
    import torch

    from pointserve.models.sbnet.ops import SparseBottleneck, SparseConv2d

    torch.manual_seed(0)
    if test == "conv":
        return SparseConv2d(problem.bottleneck, problem.bottleneck, 3).eval()
    return _randomised(SparseBottleneck(problem.channels, problem.bottleneck))


def _ort_dense(op, x, directory: Path, threads: int) -> Callable[[], Any]:
    import onnxruntime as ort
    import torch

    from pointserve.export.onnx_export import _quiet_exporter
    from pointserve.models.sbnet.ops import DenseForm

    path = directory / "dense.onnx"
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(DenseForm(op).eval(), (x,), str(path), dynamo=True, external_data=False, verbose=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = threads, 1, 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    feed = {name: x.numpy()}
    return lambda: session.run(None, feed)


def _dense_forms(op, x, directory: Path, threads: int, forms: Sequence[str]) -> dict[str, Callable[[], Any]]:
    import torch

    calls: dict[str, Callable[[], Any]] = {}
    if "nchw" in forms:
        calls["nchw"] = lambda: op.dense(x)
    if "channels_last" in forms:
        op_cl = copy.deepcopy(op).to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        calls["channels_last"] = lambda: op_cl.dense(x_cl)
    if "onnxruntime" in forms:
        calls["onnxruntime"] = _ort_dense(op, x, directory, threads)
    return calls


def _sparse_calls(test: str, op, rows, mask: np.ndarray, block: int):
    """(call with precomputed indices, call that also reduces the mask and builds the indices, indices)."""
    import torch

    geometry = block_geometry(mask.shape[1:], 3, block - 2)
    indices = sparse_block_inputs(mask, geometry, tol=TOL, avgpool=True)
    tensors = [torch.from_numpy(a) for a in (indices.gather, indices.scatter, indices.tile_pixels)]
    scatter = tensors[1]
    if test == "res":
        base = rows.clone()
        saved = base.index_select(0, scatter)  # restored after each call, outside the timed region

        def run(gather, scatter_, tile_pixels):
            op(base, gather, scatter_, tile_pixels, inplace=True)

        def restore():
            base.index_copy_(0, scatter, saved)
    else:
        base = rows.new_zeros(rows.shape[0], op.conv.out_channels)

        def run(gather, scatter_, tile_pixels):
            op(rows, gather, scatter_, tile_pixels, base, inplace=True)

        def restore():
            return None

    def with_indices():
        fresh = sparse_block_inputs(mask, geometry, tol=TOL, avgpool=True)
        run(*(torch.from_numpy(a) for a in (fresh.gather, fresh.scatter, fresh.tile_pixels)))

    return (lambda: run(*tensors)), with_indices, restore, indices, geometry, base


def _verify(test: str, op, x, rows, mask, block: int) -> float:
    """Max |sparse - expected| / max(1, |expected|max) for one case; raises over the tolerance."""
    import torch

    from pointserve.models.sbnet.ops import from_rows

    call, _, restore, indices, geometry, base = _sparse_calls(test, op, rows, mask, block)
    call()
    _, _, height, width = x.shape
    active = np.zeros((1, height, width), dtype=bool)
    tile = geometry.tile[0]
    for _, bh, bw in indices.blocks:
        active[0, bh * tile : (bh + 1) * tile, bw * tile : (bw + 1) * tile] = True
    active_t = torch.from_numpy(active)[:, None]
    dense = op.dense(x)
    elsewhere = x if test == "res" else torch.zeros(())
    expected = torch.where(active_t, dense, elsewhere)
    got = from_rows(base, 1, height, width)
    error = float((got - expected).abs().max() / max(1.0, float(expected.abs().max())))
    restore()
    if not error <= VERIFY_TOLERANCE:
        raise AssertionError(f"sparse {test} (block {block}) differs from dense by {error:.3g} (relative)")
    return error


def _timed(call: Callable[[], Any], after: Callable[[], Any] | None = None) -> float:
    start = time.perf_counter()
    call()
    elapsed = time.perf_counter() - start
    if after is not None:
        after()
    return elapsed * 1e3


def _stats(times: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}


def measure_test(test: str, problem: Problem, options: dict[str, Any], directory: Path, progress=None):
    """Every case of one test: verification, then interleaved rounds. Returns (dense stats, sparse rows)."""
    import torch

    from pointserve.models.sbnet.ops import to_rows

    c_in, _ = problem.channels_for(test)
    op = build_op(test, problem)
    x = torch.randn(1, c_in, problem.height, problem.width, generator=torch.Generator().manual_seed(1))
    rows = to_rows(x)
    cases: dict[tuple, tuple[Callable[[], Any], Callable[[], Any] | None]] = {}
    errors: dict[str, float] = {}
    sparse_meta: dict[tuple, dict[str, Any]] = {}
    with torch.no_grad():
        for form, call in _dense_forms(op, x, directory, options["threads"], options["dense_forms"]).items():
            cases[("dense", form)] = (call, None)
        for label, sparsity, mask in options["masks"]:
            for block in options["blocks"]:
                errors[f"{label}/{block}"] = _verify(test, op, x, rows, mask, block)
                call, with_indices, restore, indices, geometry, _ = _sparse_calls(test, op, rows, mask, block)
                cases[("sparse", label, block)] = (call, restore)
                cases[("indices", label, block)] = (with_indices, restore)
                total = geometry.count[0] * geometry.count[1]
                sparse_meta[(label, block)] = {
                    "mask": label,
                    "sparsity": sparsity,
                    "blocks": indices.num_blocks,
                    "block_sparsity": 1 - indices.num_blocks / total,
                }
        times: dict[tuple, list[float]] = {key: [] for key in cases}
        for call, after in cases.values():  # warm-up
            for _ in range(options["warmup"]):
                _timed(call, after)
        order = list(cases)
        shuffler = random.Random(options["seed"])
        for round_index in range(options["rounds"]):
            shuffler.shuffle(order)
            for key in order:
                call, after = cases[key]
                times[key].append(_timed(call, after))
            if progress is not None:
                progress(test, round_index + 1)
    dense = {key[1]: _stats(values) for key, values in times.items() if key[0] == "dense"}
    best_form = min(dense, key=lambda form: dense[form]["median_ms"])
    rows_out = []
    for (label, block), meta in sparse_meta.items():
        sparse = _stats(times[("sparse", label, block)])
        with_indices = _stats(times[("indices", label, block)])
        rows_out.append(_csv_row(test, problem, block, meta, dense[best_form], best_form, sparse, with_indices))
    return {"dense": dense, "best_dense_form": best_form, "verification_max_error": max(errors.values())}, rows_out


def _spread(stats: dict[str, float]) -> str:
    return f"{stats['min_ms']:.3f}-{stats['max_ms']:.3f}"


def _csv_row(test, problem, block, meta, dense, form, sparse, with_indices) -> dict[str, Any]:
    c_in, _ = problem.channels_for(test)
    k = problem.bottleneck
    return {
        "test": test, "H": problem.height, "W": problem.width, "C": c_in, "K": k, "BH": block, "BW": block,
        "sparsity": meta["sparsity"], "block_sparsity": round(meta["block_sparsity"], 4),
        "dense_time": round(dense["median_ms"], 4), "sparse_time": round(sparse["median_ms"], 4),
        "speedup": round(dense["median_ms"] / sparse["median_ms"], 3),
        "sparse_time_with_indices": round(with_indices["median_ms"], 4),
        "speedup_with_indices": round(dense["median_ms"] / with_indices["median_ms"], 3),
        "dense_form": form, "dense_spread": _spread(dense), "sparse_spread": _spread(sparse),
        "sparse_with_indices_spread": _spread(with_indices), "blocks": meta["blocks"], "mask": meta["mask"],
    }  # fmt: skip


def best_per_sparsity(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (test, mask) the block size with the best time including the indices, by test and sparsity."""
    best: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = (row["test"], row["sparsity"], row["mask"])
        if key not in best or row["sparse_time_with_indices"] < best[key]["sparse_time_with_indices"]:
            best[key] = row
    return [best[key] for key in sorted(best)]


def goal_check(best: list[dict[str, Any]], problem: Problem) -> list[dict[str, Any]]:
    """The issue's goal, where this run measured it (res at 200x350, including indices)."""
    if problem.label != GOAL["stage"]:
        return []
    checks = []
    for row in best:
        target = GOAL["speedup_at"].get(row["sparsity"])
        if row["test"] == GOAL["test"] and target is not None and row["mask"].startswith("top-left"):
            measured = row["speedup_with_indices"]
            checks.append(
                {"sparsity": row["sparsity"], "goal": target, "measured": measured, "met": measured >= target}
            )
    return checks


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def speedup_chart(best: list[dict[str, Any]], path: Path, title: str) -> Path:
    from pointserve.render import pyplot

    plt = pyplot("charts")
    figure, axis = plt.subplots(figsize=(7, 4.5), dpi=110)
    for test, colour in (("res", "tab:blue"), ("conv", "tab:orange")):
        rows = [r for r in best if r["test"] == test]
        if not rows:
            continue
        xs = [r["sparsity"] for r in rows]
        axis.plot(xs, [r["speedup"] for r in rows], "o--", color=colour, label=f"{test}: op only (indices given)")
        axis.plot(
            xs,
            [r["speedup_with_indices"] for r in rows],
            "o-",
            color=colour,
            label=f"{test}: with reduce_mask + indices",
        )
    axis.axhline(1.0, color="grey", linewidth=0.8)
    axis.set_xlabel("sparsity (fraction of the mask inactive)")
    axis.set_ylabel("speed-up over the best dense form")
    axis.set_yscale("log")
    axis.set_title(title, fontsize=10)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _problem(args) -> Problem:
    if args.size in STAGES:
        height, width, channels, bottleneck = STAGES[args.size]
    else:
        try:
            height, width = (int(v) for v in args.size.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--size must be one of {', '.join(STAGES)} or HxW, got {args.size!r}") from None
        channels, bottleneck = args.channels or 64, args.bottleneck or 16
    channels, bottleneck = args.channels or channels, args.bottleneck or bottleneck
    if min(height, width, channels, bottleneck) < 1:
        raise ConfigError("--size, --channels and --bottleneck must be positive")
    return Problem(height, width, channels, bottleneck, args.size)


def _floats(text: str | None, default: Sequence[float], flag: str) -> tuple[float, ...]:
    if not text:
        return tuple(default)
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{flag} must be a comma list of numbers, got {text!r}") from None
    if not all(0.0 <= v < 1.0 for v in values):
        raise ConfigError(f"{flag} values must be in [0, 1), got {text!r}")
    return values


def run(args) -> int:
    """The ``bench-op sbnet`` handler."""
    import torch
    from rich.console import Console

    threads = args.threads or os.cpu_count() or 1
    if args.network:
        return _run_network(args, threads)
    problem = _problem(args)
    blocks = tuple(int(v) for v in args.blocks.split(",")) if args.blocks else BLOCK_SIZES.get(args.size, (7, 11, 15))
    if any(b < 3 for b in blocks):
        raise ConfigError(f"--blocks must be at least 3 (a 3x3 kernel's block), got {args.blocks}")
    tests = [t for t in args.tests.split(",") if t]
    if not tests or set(tests) - set(TESTS):
        raise ConfigError(f"--tests must name conv and/or res, got {args.tests!r}")
    dense_forms = [f for f in args.dense_forms.split(",") if f]
    if not dense_forms or set(dense_forms) - set(DENSE_FORMS):
        raise ConfigError(f"--dense-forms must be a comma list of {', '.join(DENSE_FORMS)}, got {args.dense_forms!r}")
    if args.rounds < 1 or args.warmup < 0:
        raise ConfigError("--rounds must be at least 1 and --warmup at least 0")
    torch.set_num_threads(threads)
    if args.masks == "lidar":
        if args.scans < 1:
            raise ConfigError("--scans must be at least 1")
        masks = lidar_masks(problem.height, problem.width, args.scans)
    else:
        masks = top_left_masks(problem.height, problem.width, _floats(args.sparsities, SPARSITIES, "--sparsities"))
    options = {
        "threads": threads, "blocks": blocks, "masks": masks, "rounds": args.rounds, "warmup": args.warmup,
        "seed": args.seed, "dense_forms": dense_forms,
    }  # fmt: skip
    console = Console(width=max(Console().width, 120))  # the summary table's width, also in a log file
    console.print(
        f"SBNet {'/'.join(tests)} at {problem.height}x{problem.width}, C={problem.channels} K={problem.bottleneck}, "
        f"{threads} threads, blocks {list(blocks)}, {len(masks)} {args.masks} masks, {args.rounds} rounds",
        highlight=False,
    )
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for test in tests:
            started = time.perf_counter()
            summary, test_rows = measure_test(
                test,
                problem,
                options,
                Path(scratch),
                progress=lambda t, r: console.print(f"  {t}: round {r}/{args.rounds}", end="\r"),
            )
            summary["seconds"] = round(time.perf_counter() - started, 1)
            results[test] = summary
            rows += test_rows
    best = best_per_sparsity(rows)
    _print_summary(console, results, best, problem)
    checks = goal_check(best, problem)
    for check in checks:
        verdict = "met" if check["met"] else "NOT met"
        console.print(
            f"goal res {problem.label} at sparsity {check['sparsity']}: >= {check['goal']:g}x including indices — "
            f"measured {check['measured']:.2f}x: {verdict}",
            highlight=False,
        )
    csv_path, png_path, json_path = output / "sbnet.csv", output / "sbnet-speedup.png", output / "sbnet.json"
    write_csv(rows, csv_path)
    title = (
        f"SBNet at {problem.height}x{problem.width} (C={problem.channels}, K={problem.bottleneck}), {threads} threads"
    )
    speedup_chart(best, png_path, title)
    report = {
        "problem": problem.__dict__,
        "options": {**options, "masks": [(label, sparsity) for label, sparsity, _ in masks]},
        "tests": results,
        "rows": rows,
        "best": best,
        "goal": checks,
    }
    json_path.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    console.print(f"CSV {csv_path}\nPNG {png_path}\nJSON {json_path}", highlight=False)
    return 0


def _run_network(args, threads: int) -> int:
    from rich.console import Console

    from pointserve.bench.sbnet_network import measure_network

    if args.scans < 1 or args.rounds < 1:
        raise ConfigError("--scans and --rounds must be at least 1")
    console = Console(width=max(Console().width, 120))
    console.print(f"BEV network {args.network}: sparse vs dense twin, ONNX Runtime, {threads} threads", highlight=False)
    report = measure_network(
        args.network,
        args.scans,
        args.rounds,
        threads,
        args.seed,
        progress=lambda r: console.print(f"  round {r}/{args.rounds}", end="\r"),
    )
    forms = report["forms"]
    console.print(
        f"{report['scans']} test scans (median {report['points_per_scan_median']} points, tile sparsity "
        f"{report['tile_sparsity_median']:.3f}), {report['rounds']} rounds; preprocessing (pillars, reduce_mask, "
        f"indices) {report['preprocess_ms_median']:.1f} ms\n"
        f"  sparse graph {forms['sparse']['graph_ms_median']:.1f} ms "
        f"({forms['sparse']['graph_ms_min']:.1f}-{forms['sparse']['graph_ms_max']:.1f})\n"
        f"  dense twin   {forms['dense']['graph_ms_median']:.1f} ms "
        f"({forms['dense']['graph_ms_min']:.1f}-{forms['dense']['graph_ms_max']:.1f})\n"
        f"  speed-up {report['speedup_graph']:.2f}x graph, {report['speedup_end_to_end']:.2f}x with preprocessing; "
        f"labels identical on {100 * report['label_agreement']:.3f} % of {report['points']} points",
        highlight=False,
    )
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    path = output / "sbnet-network.json"
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    console.print(f"JSON {path}", highlight=False)
    return 0


def _print_summary(console, results: dict[str, Any], best: list[dict[str, Any]], problem: Problem) -> None:
    from rich.table import Table

    for test, summary in results.items():
        dense = ", ".join(f"{form} {s['median_ms']:.1f} ms" for form, s in summary["dense"].items())
        console.print(
            f"{test}: dense {dense} -> best {summary['best_dense_form']}; verified (max rel. error "
            f"{summary['verification_max_error']:.1e}); {summary['seconds']} s",
            highlight=False,
        )
    table = Table(title=f"best block per sparsity ({problem.height}x{problem.width}), medians")
    columns = (
        "test",
        "mask",
        "sparsity",
        "BH",
        "blocks",
        "blk sparsity",
        "dense ms",
        "sparse ms",
        "x",
        "+idx ms",
        "x incl idx",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for row in best:
        table.add_row(
            row["test"], row["mask"], f"{row['sparsity']:.3f}", str(row["BH"]), str(row["blocks"]),
            f"{row['block_sparsity']:.3f}",
            f"{row['dense_time']:.2f}", f"{row['sparse_time']:.2f}", f"{row['speedup']:.2f}x",
            f"{row['sparse_time_with_indices']:.2f}", f"{row['speedup_with_indices']:.2f}x",
        )  # fmt: skip
    console.print(table)
