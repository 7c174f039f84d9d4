"""The trtexec-style report of one benchmark, as text and as JSON (``--export-json``).

The text follows trtexec's layout: ``=== Model Options ===``, ``=== Inference Options ===``,
``=== Device Information ===``, ``=== Performance summary ===`` (Throughput, Latency, Enqueue Time, the
GPU phases on GPU backends, Total Host Walltime), the coefficient-of-variance warning, and the
``&&&& RUNNING`` / ``&&&& PASSED`` lines around it all.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pointserve import __version__
from pointserve.bench.engine_bench import BenchResult, Stats

JSON_SCHEMA = "pointserve.bench/1"
_PHASE_LINES = (
    ("h2d", "H2D Latency"),
    ("gpu_compute", "GPU Compute Time"),
    ("d2h", "D2H Latency"),
)
EXPLANATIONS = (
    "Throughput: queries (one infer call of --batch clouds) per second of host walltime; clouds/s = qps x batch.",
    "Latency: host time of one query, from the call to the answer in host memory.",
    "Enqueue Time: host time to submit a query (GPU: the execute_async_v3 / run call; CPU: input checks and "
    "conversion before the runtime is called).",
    "Compute Time (CPU backends): the runtime's own call. H2D / GPU Compute / D2H (GPU backends): the copies "
    "to the GPU, the engine, the copies back.",
    "Total Host Walltime: from the first timed query's start to the last one's end.",
)


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(with_gpu: bool) -> dict[str, Any]:
    """Where the numbers were measured: CPU, usable cores, runtime versions and (GPU backends) the GPU."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 0
    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "python": platform.python_version(),
        "pointserve": __version__,
    }
    for module in ("onnxruntime", "torch", "tensorrt"):
        if module in sys.modules:
            info[module] = getattr(sys.modules[module], "__version__", "unknown")
    if with_gpu:
        from pointserve.engines.gpu import current_gpu

        gpu = current_gpu()
        if gpu is not None:
            info["gpu"] = {"name": gpu.name, "compute_capability": gpu.compute_capability, "driver": gpu.driver_version}
    return info


def _stats_line(label: str, stats: Stats) -> str:
    parts = [
        f"min = {stats.min_ms:.5g} ms",
        f"max = {stats.max_ms:.5g} ms",
        f"mean = {stats.mean_ms:.5g} ms",
        f"median = {stats.median_ms:.5g} ms",
    ]
    parts += [f"percentile({q:g}%) = {v:.5g} ms" for q, v in stats.percentiles_ms.items()]
    return f"{label}: " + ", ".join(parts)


def model_lines(result: BenchResult) -> list[str]:
    target = result.target
    lines = ["=== Model Options ==="]
    if target.model:
        lines.append(f"Model: {target.model}")
    if target.variant:
        lines.append(f"Variant: {target.variant} ({target.precision}, {target.backend})")
    lines.append(f"File: {target.path}")
    if target.card is not None:
        card = target.card
        lines.append(f"Task: {card.task}, {card.num_outputs} outputs, trained on {card.num_points} points per cloud")
    return lines


def inference_lines(result: BenchResult) -> list[str]:
    config, target = result.config, result.target
    providers = f" [{', '.join(target.providers)}]" if target.providers else ""
    return [
        "=== Inference Options ===",
        f"Batch: {config.batch}",
        f"Points: {result.num_points} (channels {target.channels})"
        + (", with category input" if target.needs_category else ""),
        f"Backend: {target.backend}{providers}",
        f"Threads: {config.threads if config.threads is not None else 'runtime default'}",
        f"Streams: {config.streams}",
        f"Warm-up: {config.warmup_ms:g} ms",
        f"Duration: {config.duration_s:g} s (at least {config.iterations} iterations)",
        f"Percentiles: {', '.join(f'{q:g}' for q in config.percentiles)}",
    ]


def device_lines(device: dict[str, Any]) -> list[str]:
    lines = ["=== Device Information ===", f"CPU: {device['cpu']} ({device['usable_cpus']} usable logical CPUs)"]
    gpu = device.get("gpu")
    lines.append(f"GPU: {gpu['name']} (compute capability {gpu['compute_capability']})" if gpu else "GPU: none used")
    runtimes = [f"{m} {device[m]}" for m in ("onnxruntime", "torch", "tensorrt") if m in device]
    lines.append(f"Runtimes: {', '.join(runtimes) or 'none'}; pointserve {device['pointserve']}")
    return lines


def summary_lines(result: BenchResult) -> list[str]:
    lines = ["=== Performance summary ==="]
    if not result.times:
        return [*lines, "No queries were timed."]
    lines.append(f"Throughput: {result.qps:.5g} qps ({result.clouds_per_s:.5g} clouds/s)")
    lines.append(_stats_line("Latency", result.stats("latency")))
    enqueue = result.stats("enqueue")
    if enqueue is not None:
        lines.append(_stats_line("Enqueue Time", enqueue))
    if result.gpu_phases:
        for phase, label in _PHASE_LINES:
            stats = result.stats(phase)
            if stats is not None:
                lines.append(_stats_line(label, stats))
    else:
        compute = result.stats("compute")
        if compute is not None:
            lines.append(_stats_line("Compute Time", compute))
    lines.append(f"Total Host Walltime: {result.walltime_s:.5g} s")
    busy = result.stats("gpu_compute" if result.gpu_phases else "compute")
    if busy is not None:
        lines.append(f"Total {'GPU ' if result.gpu_phases else ''}Compute Time: {busy.total_s:.5g} s")
    lines.append(f"Queries: {result.queries} ({result.queries * result.config.batch} clouds)")
    if result.preprocess_s:
        prep = Stats.of(result.preprocess_s, result.config.percentiles)
        lines.append(_stats_line(f"Preprocessing (CPU, per cloud of {result.num_points} points, not in Latency)", prep))
    if result.gpu_phases and enqueue is not None and busy is not None and enqueue.median_ms > busy.median_ms:
        lines.append(
            "[W] * Throughput may be bound by Enqueue Time rather than GPU Compute and the GPU may be under-utilized."
        )
    lines += [f"[W] {warning}" for warning in result.warnings]
    return lines


def format_report(result: BenchResult, device: dict[str, Any] | None = None, *, explain: bool = True) -> str:
    device = device if device is not None else device_info(result.gpu_phases or result.target.backend == "tensorrt")
    blocks = [model_lines(result), inference_lines(result), device_lines(device), summary_lines(result)]
    text = "\n".join("\n".join(block) for block in blocks)
    if explain:
        text += "\nExplanations of the performance metrics:\n" + "\n".join(f"  {line}" for line in EXPLANATIONS)
    return text


def _stats_dict(stats: Stats | None) -> dict[str, Any] | None:
    if stats is None:
        return None
    return {
        "min": stats.min_ms,
        "max": stats.max_ms,
        "mean": stats.mean_ms,
        "median": stats.median_ms,
        "percentiles": {f"p{q:g}": v for q, v in stats.percentiles_ms.items()},
        "std": stats.std_ms,
        "coefficient_of_variance_pct": stats.cov_pct,
        "total_s": stats.total_s,
    }


def result_dict(result: BenchResult, *, with_times: bool = True) -> dict[str, Any]:
    """One result as plain JSON types: options, summary (milliseconds unless a name says otherwise), times."""
    target, config = result.target, result.config
    accuracy = target.accuracy.model_dump() if target.accuracy is not None else None
    summary: dict[str, Any] = {
        "queries": result.queries,
        "clouds": result.queries * config.batch,
        "throughput_qps": result.qps,
        "throughput_clouds_per_s": result.clouds_per_s,
        "total_host_walltime_s": result.walltime_s,
        "latency_ms": _stats_dict(result.stats("latency")),
        "enqueue_time_ms": _stats_dict(result.stats("enqueue")),
        "preprocess_ms_per_cloud": _stats_dict(Stats.of(result.preprocess_s, config.percentiles))
        if result.preprocess_s
        else None,
    }
    if result.gpu_phases:
        summary["h2d_latency_ms"] = _stats_dict(result.stats("h2d"))
        summary["gpu_compute_time_ms"] = _stats_dict(result.stats("gpu_compute"))
        summary["d2h_latency_ms"] = _stats_dict(result.stats("d2h"))
    else:
        summary["compute_time_ms"] = _stats_dict(result.stats("compute"))
    stability = result.stats(result.stability_series)
    summary["unstable"] = bool(result.warnings)
    summary["coefficient_of_variance_pct"] = stability.cov_pct if stability is not None else None
    data: dict[str, Any] = {
        "target": {
            "label": target.label,
            "file": str(target.path),
            "model": target.model,
            "variant": target.variant,
            "precision": target.precision,
            "backend": target.backend,
            "providers": list(target.providers),
            "task": target.task,
            "accuracy": accuracy,
            "accuracy_note": target.accuracy_note or None,
        },
        "options": {
            "batch": config.batch,
            "points": result.num_points,
            "channels": target.channels,
            "warmup_ms": config.warmup_ms,
            "duration_s": config.duration_s,
            "iterations": config.iterations,
            "streams": config.streams,
            "threads": config.threads,
            "percentiles": list(config.percentiles),
            "seed": config.seed,
        },
        "gpu_phases": result.gpu_phases,
        "summary": summary,
        "warnings": list(result.warnings),
    }
    if with_times:
        data["times"] = [
            {
                "start_ms": 1e3 * t.start_s,
                "latency_ms": 1e3 * t.latency_s,
                "stream": t.stream,
                "round": t.round,
                **{
                    f"{name}_ms": 1e3 * value
                    for name in ("enqueue", "compute", "h2d", "gpu_compute", "d2h")
                    if (value := getattr(t.phases, f"{name}_s")) is not None
                },
            }
            for t in result.times
        ]
    return data


def export_json(
    path: str | Path, results: list[BenchResult], device: dict[str, Any], command: str, **extra: Any
) -> Path:
    """Write every result (and the device and command that produced them) to ``path``."""
    document = {
        "schema": JSON_SCHEMA,
        "command": command,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "results": [result_dict(r) for r in results],
        **extra,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


__all__ = ["EXPLANATIONS", "JSON_SCHEMA", "device_info", "export_json", "format_report", "result_dict"]
