"""``pointserve doctor``: what this machine can run, and measured throughput of a model's backends.

- environment: Python, package versions, ONNX Runtime providers, GPUs (cuda-python or nvidia-smi), TensorRT;
- ``--throughput MODEL``: PyTorch eager vs every ONNX variant on ONNX Runtime CPU (clouds/s, medians);
- ``--gpu MODEL``: builds the four TensorRT precisions, checks each against the fp32 ONNX graph on ONNX
  Runtime CPU, and times every plan. Every number printed is measured on this machine, now.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pointserve.card import ModelCard
from pointserve.engines.selection import REFERENCE_VARIANT, create_runner
from pointserve.repository.store import ModelVersion

PACKAGES = ("pointserve", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "torch", "tensorrt", "cuda-python")


def environment_rows() -> list[tuple[str, str]]:
    from pointserve.engines.gpu import detect_gpus

    rows = [("python", sys.version.split()[0]), ("platform", platform.platform()), ("cpu cores", str(os.cpu_count()))]
    for package in PACKAGES:
        try:
            rows.append((package, importlib.metadata.version(package)))
        except importlib.metadata.PackageNotFoundError:
            rows.append((package, "not installed"))
    try:
        from pointserve.engines.onnxruntime.runner import available_providers

        rows.append(("onnxruntime providers", ", ".join(available_providers())))
    except Exception as exc:  # report, never fail: doctor must run on broken installs
        rows.append(("onnxruntime providers", f"unavailable ({exc})"))
    gpus = detect_gpus()
    if not gpus:
        rows.append(("gpu", "none visible"))
    for gpu in gpus:
        memory = f", {gpu.memory_total_mib} MiB" if gpu.memory_total_mib else ""
        rows.append((f"gpu {gpu.index}", f"{gpu.name} (compute capability {gpu.compute_capability}{memory})"))
    from pointserve.engines.tensorrt.cuda_rt import driver_version

    rows.append(("cuda driver", driver_version() or "unknown (cuda-python not installed or no driver)"))
    return rows


@dataclass
class ThroughputRow:
    backend: str
    batch: int
    clouds_per_s: float
    median_ms: float


def random_batch(card: ModelCard, batch: int, num_points: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The graph's named inputs for ``batch`` random normalised clouds (and categories), made by the family."""
    from pointserve.models.collate import random_feeds
    from pointserve.models.registry import get_spec

    feeds, _ = random_feeds(get_spec(card.architecture), card, batch, num_points, np.random.default_rng(seed))
    return feeds


def measure_throughput(
    runners: dict[str, object],
    batches: Sequence[int],
    num_points: int,
    *,
    card: ModelCard,
    repeats: int = 10,
    warmup: int = 2,
) -> list[ThroughputRow]:
    """Median throughput of every (runner, batch) on the same random batch; the runners must be loaded."""
    from pointserve.bench.timing import runner_throughput

    feeds = {batch: random_batch(card, batch, num_points) for batch in batches}
    rows = []
    for name, runner in runners.items():
        for batch in batches:
            timing = runner_throughput(runner, feeds[batch], batch, repeats=repeats, warmup=warmup)
            rows.append(ThroughputRow(name, batch, timing.clouds_per_s, 1e3 * timing.median_s))
    return rows


def throughput_table(rows: list[ThroughputRow], title: str):
    from rich.table import Table

    batches = sorted({r.batch for r in rows})
    table = Table(title=title)
    table.add_column("backend")
    for batch in batches:
        table.add_column(f"B={batch} clouds/s", justify="right")
        table.add_column(f"B={batch} median ms", justify="right")
    for backend in dict.fromkeys(r.backend for r in rows):
        cells = []
        for batch in batches:
            row = next((r for r in rows if r.backend == backend and r.batch == batch), None)
            cells += [f"{row.clouds_per_s:.1f}", f"{row.median_ms:.2f}"] if row else ["-", "-"]
        table.add_row(backend, *cells)
    return table


def cpu_runners(
    model_version: ModelVersion,
    checkpoint: str | None,
    variants: Sequence[str] | None,
    max_batch: int,
    max_points: int,
    threads: int | None,
) -> dict[str, object]:
    """PyTorch eager (from --checkpoint or the fp32-torch variant) and ONNX Runtime CPU per ONNX variant."""
    from pointserve.engines.limits import limits_for_card
    from pointserve.engines.torch.runner import TorchRunner

    runners: dict[str, object] = {}
    limits = limits_for_card(model_version.card, max_batch=max_batch, max_points=max_points)
    if checkpoint is not None:
        runners["pytorch eager fp32"] = TorchRunner(checkpoint, limits, threads=threads)
    elif model_version.has_variant(REFERENCE_VARIANT):
        weights = model_version.variant_path(REFERENCE_VARIANT)
        runners["pytorch eager fp32"] = TorchRunner(weights, limits, card=model_version.card, threads=threads)
    for v in model_version.manifest.variants:
        if v.backend == "onnxruntime" and (variants is None or v.name in variants):
            runners[f"onnxruntime cpu {v.name}"] = create_runner(
                model_version,
                v.name,
                backend="onnxruntime",
                max_batch=max_batch,
                max_points=max_points,
                threads=threads,
                providers=("CPUExecutionProvider",),
            )
    for runner in runners.values():
        runner.load()
    return runners


def check_plans_against_fp32(model_version: ModelVersion, plan_names: Sequence[str], num_points: int, batch: int = 8):
    """(plan, max |Δ| over the outputs vs the fp32 ONNX graph on ONNX Runtime CPU, argmax agreement of the
    first output) on random clouds."""
    feeds = random_batch(model_version.card, batch, num_points)
    with create_runner(model_version, "fp32", backend="onnxruntime", max_batch=batch) as reference:
        want = reference.infer(feeds)
        names = reference.output_names
    results = []
    for name in plan_names:
        with create_runner(model_version, name, backend="tensorrt", max_batch=batch) as runner:
            got = runner.infer(feeds)
        diff = max(float(np.max(np.abs(got[n].astype(np.float64) - want[n]))) for n in names)
        first = names[0]
        results.append((name, diff, float((got[first].argmax(-1) == want[first].argmax(-1)).mean())))
    return results


__all__ = [
    "ThroughputRow",
    "check_plans_against_fp32",
    "cpu_runners",
    "environment_rows",
    "measure_throughput",
    "random_batch",
    "throughput_table",
]
