"""PNG charts (matplotlib, Agg backend: no display needed): throughput and accuracy per precision for
``pointserve bench --compare``, latency against throughput for ``pointserve loadgen``.

matplotlib is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pointserve.bench.engine_bench import BenchResult
from pointserve.render import pyplot


def _pyplot() -> Any:
    return pyplot("charts")


def _label(result: BenchResult) -> str:
    target = result.target
    name = target.variant or target.label
    return name if target.backend == "onnxruntime" else f"{name}\n({target.backend})"


def compare_chart(results: Sequence[BenchResult], path: str | Path, *, title: str = "") -> Path:
    """Left: clouds/s per variant (one bar per batch size). Right: each variant's accuracy from the manifest,
    with the fp32 one as a dashed line. Returns the PNG's path."""
    plt = _pyplot()
    labels: list[str] = []
    for result in results:
        if _label(result) not in labels:
            labels.append(_label(result))
    batches = sorted({r.config.batch for r in results})
    fig, (ax_speed, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / len(batches)
    for j, batch in enumerate(batches):
        xs, ys = [], []
        for result in results:
            if result.config.batch == batch:
                xs.append(labels.index(_label(result)) + (j - (len(batches) - 1) / 2) * width)
                ys.append(result.clouds_per_s)
        bars = ax_speed.bar(xs, ys, width=width, label=f"batch {batch}")
        ax_speed.bar_label(bars, fmt="%.0f", fontsize=7, padding=2)
    ax_speed.set_xticks(range(len(labels)), labels, fontsize=8)
    ax_speed.set_ylabel("throughput (clouds/s)")
    ax_speed.set_title("throughput per variant")
    ax_speed.legend(fontsize=8)
    ax_speed.grid(axis="y", alpha=0.3)

    accuracy: dict[str, float] = {}
    reference = None
    for result in results:
        acc = result.target.accuracy
        if acc is None:
            continue
        value = acc.mean_iou if result.target.task != "classification" and acc.mean_iou is not None else acc.overall_acc
        accuracy[_label(result)] = 100 * value
        if result.target.precision == "fp32" and result.target.backend == "onnxruntime":
            reference = 100 * value
    if accuracy:
        names = list(accuracy)
        bars = ax_acc.bar(range(len(names)), list(accuracy.values()), color="tab:green")
        ax_acc.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        ax_acc.set_xticks(range(len(names)), names, fontsize=8)
        low = min(accuracy.values())
        ax_acc.set_ylim(max(0.0, low - 5), min(100.0, max(accuracy.values()) + 2))
        if reference is not None:
            ax_acc.axhline(reference, color="black", linestyle="--", linewidth=0.8, label="fp32")
            ax_acc.legend(fontsize=8)
    else:
        ax_acc.text(0.5, 0.5, "no accuracy in the manifest\n(pointserve evaluate-variants)", ha="center", va="center")
        ax_acc.set_xticks([])
    ax_acc.set_ylabel("accuracy (%) on the test split")
    ax_acc.set_title("accuracy per variant (manifest)")
    ax_acc.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency_throughput_chart(
    series: dict[str, Sequence[dict[str, Any]]], path: str | Path, *, title: str = "", percentiles: Sequence[str] = ()
) -> Path:
    """Latency (ms) against throughput (requests/s), one line per series, one point per load step.

    ``series``: name -> steps, each step a dict with ``throughput_rps``, ``p50_ms``, ``p99_ms`` (and the
    ``percentiles`` named, e.g. ``"p90_ms"``) and a ``label`` (the concurrency or rate) to annotate.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (name, steps) in enumerate(series.items()):
        steps = [s for s in steps if s.get("throughput_rps")]
        if not steps:
            continue
        color = colors[index % len(colors)]  # one colour per series, one line style per percentile
        xs = [s["throughput_rps"] for s in steps]
        for key, style in (("p50_ms", "-o"), *((p, ":.") for p in percentiles), ("p99_ms", "--s")):
            ys = [s.get(key) for s in steps]
            if any(y is None for y in ys):
                continue
            ax.plot(xs, ys, style, color=color, label=f"{name} {key.removesuffix('_ms')}", markersize=4)
        for s in steps:
            ax.annotate(
                str(s.get("label", "")),
                (s["throughput_rps"], s["p50_ms"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title or "latency vs throughput (labels: concurrency or request rate)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["compare_chart", "latency_throughput_chart"]
