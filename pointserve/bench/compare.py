"""``pointserve bench --compare``: several variants, backends and batch sizes timed in one process,
interleaved, and one table of throughput next to each variant's accuracy from the manifest.

Interleaving: every (target, batch) case gets ``rounds`` short slices of the measurement time, and each
round visits the cases in a rotated order. Slow drift of the machine (thermal throttling, other work on
a shared host) then hits every case alike instead of whichever happened to run last.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from pointserve.bench.engine_bench import (
    BenchConfig,
    BenchResult,
    Session,
    make_inputs,
    measure,
    measure_preprocessing,
    stability_warnings,
    warm_up,
)
from pointserve.bench.targets import BenchTarget
from pointserve.errors import ConfigError

DEFAULT_ROUNDS = 5


def run_interleaved(
    targets: Sequence[BenchTarget],
    batches: Sequence[int],
    config: BenchConfig,
    *,
    rounds: int = DEFAULT_ROUNDS,
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """One :class:`BenchResult` per (target, batch), in target-then-batch order.

    Each case is measured for ``config.duration_s`` in total (and at least ``config.iterations`` queries),
    split over ``rounds`` slices; the whole run stops at ``config.max_time_s`` whatever is left.
    """
    if rounds < 1:
        raise ConfigError("--rounds must be at least 1")
    if not targets or not batches:
        raise ConfigError("nothing to compare: no targets or no batch sizes")
    cases = [(t, b) for t in targets for b in batches]
    results = {
        (i, b): BenchResult(t, replace(config, batch=b), config.num_points or t.default_points)
        for i, t in enumerate(targets)
        for b in batches
    }
    slice_s = config.duration_s / rounds
    slice_iterations = max(1, math.ceil(config.iterations / rounds))
    deadline = time.perf_counter() + config.max_time_s
    sessions: list[Session] = []
    try:
        for target in targets:
            if progress:
                progress(f"loading {target.label} ({target.backend})")
            sessions.append(Session(target, config))
        inputs = {
            (i, b): make_inputs(t, b, results[(i, b)].num_points, config.seed)
            for i, t in enumerate(targets)
            for b in batches
        }
        for (i, b), case_inputs in inputs.items():
            warm_up(sessions[i], case_inputs, config.warmup_ms)
            results[(i, b)].gpu_phases = sessions[i].gpu_phases
        keys = list(results)
        for round_index in range(rounds):
            if progress:
                progress(f"round {round_index + 1}/{rounds} over {len(cases)} cases")
            shift = round_index % len(keys)
            for key in keys[shift:] + keys[:shift]:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                result = results[key]
                times, walltime = measure(
                    sessions[key[0]],
                    inputs[key],
                    duration_s=slice_s,
                    iterations=slice_iterations,
                    max_iterations=config.max_iterations,
                    max_time_s=remaining,
                )
                # Start times continue from the case's previous slices, so a result reads as one run.
                result.times += [replace(t, start_s=t.start_s + result.walltime_s, round=round_index) for t in times]
                result.walltime_s += walltime
    finally:
        for session in sessions:
            session.close()
    # Preprocessing depends on the target's family and points, not on the batch: measured once per target.
    preprocess = {
        i: measure_preprocessing(t, results[(i, batches[0])].num_points, config.seed) for i, t in enumerate(targets)
    }
    for (i, _), result in results.items():
        result.warnings = stability_warnings(result)
        result.preprocess_s = preprocess[i]
    ordered = [results[key] for key in results]
    return ordered


def accuracy_text(result: BenchResult) -> tuple[str, str]:
    """(accuracy, agreement with fp32) as table cells: overall accuracy for classification, mIoU for
    segmentation when recorded; a dash when the manifest has none."""
    accuracy = result.target.accuracy
    if accuracy is None:
        return "-", "-"
    task = result.target.task
    value = accuracy.mean_iou if task != "classification" and accuracy.mean_iou is not None else accuracy.overall_acc
    name = "mIoU" if task != "classification" and accuracy.mean_iou is not None else "acc"
    mark = "*" if result.target.accuracy_note else ""
    return f"{100 * value:.2f}% {name}{mark}", f"{100 * accuracy.agreement_with_fp32:.2f}%"


COLUMNS = (
    "variant",
    "backend",
    "precision",
    "batch",
    "throughput (qps)",
    "clouds/s",
    "median latency (ms)",
    "p99 latency (ms)",
    "CoV (%)",
    "preprocess (ms/cloud)",
    "accuracy",
    "agreement with fp32",
)


def table_rows(results: Sequence[BenchResult]) -> list[list[str]]:
    rows = []
    for result in results:
        target = result.target
        latency = result.stats("latency")
        p99 = latency.percentiles_ms.get(99.0, max(latency.percentiles_ms.values())) if latency else None
        accuracy, agreement = accuracy_text(result)
        backend = target.backend
        if target.providers and target.providers[0] != "CPUExecutionProvider":
            backend += f" ({target.providers[0].removesuffix('ExecutionProvider')})"
        rows.append(
            [
                target.variant or target.label,
                backend,
                target.precision or "-",
                str(result.config.batch),
                f"{result.qps:.1f}",
                f"{result.clouds_per_s:.1f}",
                f"{latency.median_ms:.3f}" if latency else "-",
                f"{p99:.3f}" if p99 is not None else "-",
                f"{latency.cov_pct:.1f}" if latency else "-",
                # three significant digits: an identity preprocessor takes well under a microsecond
                f"{1e3 * float(np.median(result.preprocess_s)):.3g}" if result.preprocess_s else "-",
                accuracy,
                agreement,
            ]
        )
    return rows


def format_table(results: Sequence[BenchResult]) -> str:
    """A Markdown table (pastes into docs as is), columns padded for the terminal."""
    rows = [list(COLUMNS), *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    out = [line(rows[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in rows[1:]]
    notes = sorted({r.target.accuracy_note for r in results if r.target.accuracy_note})
    out += [f"* accuracy {note}" for note in notes]
    return "\n".join(out)


__all__ = ["COLUMNS", "DEFAULT_ROUNDS", "accuracy_text", "format_table", "run_interleaved", "table_rows"]
