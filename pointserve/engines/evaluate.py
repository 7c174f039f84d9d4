"""Every variant's accuracy on the test split next to the PyTorch fp32 reference, written into the manifest.

ONNX variants run through ONNX Runtime on the CPU (what CI and the CPU image serve); TensorRT plans are
evaluated too when they can run here. The reference is the fp32 PyTorch model: from ``--checkpoint`` or
the version's ``fp32-torch`` variant.

Metrics (PointNet's protocol, :mod:`pointserve.metrics`): classification — overall and mean class
accuracy; part segmentation — instance mIoU with the argmax restricted to each shape's category parts, and
point accuracy as "overall". Agreement is the fraction of predictions (clouds, or points) equal to the
reference's; max |Δlogit| is over every logit of the split.

Shapes:
    points (S, N, C) float32, labels (S,), seg (S, N) -> logits (S, K) or (S, N, P)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pointserve.card import ModelCard
from pointserve.engines.base import Runner
from pointserve.engines.environment import detect_environment
from pointserve.engines.selection import REFERENCE_VARIANT, create_runner, limits_for_card
from pointserve.errors import ConfigError, EngineError
from pointserve.metrics import card_predictions, card_task_metrics
from pointserve.models.collate import first_output_per_cloud
from pointserve.models.registry import get_spec
from pointserve.repository.manifest import AccuracyInfo
from pointserve.repository.store import ModelVersion


@dataclass
class EvalSet:
    """A fixed, normalised test subset."""

    dataset: str
    points: np.ndarray
    labels: np.ndarray
    seg: np.ndarray | None


def load_eval_set(
    card: ModelCard, dataset: str | None = None, max_samples: int | None = None, data_root: str | None = None
) -> EvalSet:
    """The test split, resampled to the card's points per cloud and normalised as the card says.

    ``max_samples`` takes a fixed, seeded subset spread over the whole split (splits are often ordered by
    class, so the first S would not do).
    """
    from pointserve.data import load_dataset
    from pointserve.data.transforms import normalize, resample_indices

    name = dataset or card.dataset
    if not name:
        raise ConfigError("the model card names no dataset; pass --dataset")
    options = {"task": card.task, "num_points": card.num_points}
    if data_root:
        options["root"] = data_root
    split = load_dataset(name, "test", **options)
    indices = np.arange(len(split))
    if max_samples is not None and max_samples < len(split):
        indices = np.sort(np.random.default_rng(0).choice(len(split), max_samples, replace=False))
    rng = np.random.default_rng(0)
    clouds, labels, segs = [], [], []
    for i in indices:
        sample = split[int(i)]
        pick = resample_indices(len(sample.points), card.num_points, rng)
        clouds.append(normalize(sample.points[pick], card.normalization))
        labels.append(sample.label)
        if sample.seg is not None:
            segs.append(sample.seg[pick])
    if not clouds:
        raise ConfigError(f"dataset {name!r} has an empty test split")
    seg = np.stack(segs).astype(np.int64) if segs and card.task != "classification" else None
    return EvalSet(name, np.stack(clouds).astype(np.float32), np.asarray(labels, dtype=np.int64), seg)


def run_batched(runner: Runner, card: ModelCard, data: EvalSet, batch_size: int) -> np.ndarray:
    """Logits of every cloud of ``data``, batched through the family's preprocessor and collate policy.

    Shapes: (S, K) or (S, N, P)
    """
    return first_output_per_cloud(runner.infer, get_spec(card.architecture), card, data.points, data.labels, batch_size)


def accuracy_info(
    card: ModelCard, data: EvalSet, logits: np.ndarray, reference_logits: np.ndarray | None
) -> AccuracyInfo:
    """The variant's task metrics (:func:`pointserve.metrics.card_metrics`) and its agreement with the reference."""
    pred = card_predictions(card, logits, data.labels)
    if reference_logits is None:
        agreement, max_diff = 1.0, 0.0
    else:
        agreement = float((pred == card_predictions(card, reference_logits, data.labels)).mean())
        max_diff = float(np.max(np.abs(logits.astype(np.float64) - reference_logits.astype(np.float64))))
    common = {"dataset": data.dataset, "num_samples": len(data.labels)}
    if card.task != "classification" and data.seg is None:
        raise ConfigError(f"dataset {data.dataset!r} has no per-point labels to evaluate segmentation with")
    metrics = card_task_metrics(card, pred, data.labels, data.seg)
    if card.task == "classification":
        return AccuracyInfo(
            **common,
            overall_acc=metrics["overall_acc"],
            mean_class_acc=metrics["mean_class_acc"],
            agreement_with_fp32=agreement,
            max_abs_logit_diff=max_diff,
        )
    return AccuracyInfo(
        **common,
        overall_acc=metrics["point_acc"],
        mean_iou=metrics.get("miou", metrics["instance_miou"]),  # semantic segmentation: the split's mIoU
        agreement_with_fp32=agreement,
        max_abs_logit_diff=max_diff,
    )


def reference_runner(model_version: ModelVersion, checkpoint: str | Path | None, max_batch: int) -> Runner:
    from pointserve.engines.torch.runner import TorchRunner

    limits = limits_for_card(model_version.card, max_batch=max_batch)
    if checkpoint is not None:
        return TorchRunner(checkpoint, limits, name="pytorch fp32")
    if model_version.has_variant(REFERENCE_VARIANT):
        weights = model_version.variant_path(REFERENCE_VARIANT)
        return TorchRunner(weights, limits, card=model_version.card, name="pytorch fp32")
    raise ConfigError(
        f"{model_version.name} v{model_version.version} keeps no PyTorch weights ({REFERENCE_VARIANT}); "
        "pass --checkpoint with the checkpoint it was exported from"
    )


def evaluate_variants(
    model_version: ModelVersion,
    *,
    dataset: str | None = None,
    data_root: str | None = None,
    max_samples: int | None = None,
    checkpoint: str | Path | None = None,
    batch_size: int = 32,
    threads: int | None = None,
    variants: list[str] | None = None,
    write: bool = True,
) -> tuple[AccuracyInfo, dict[str, AccuracyInfo], list[str]]:
    """``(reference, {variant: accuracy}, notes)``; with ``write`` the manifest records all of them."""
    card = model_version.card
    data = load_eval_set(card, dataset, max_samples, data_root)
    with reference_runner(model_version, checkpoint, batch_size) as ref:
        reference_logits = run_batched(ref, card, data, batch_size)
    reference = accuracy_info(card, data, reference_logits, None)
    env = detect_environment()
    results: dict[str, AccuracyInfo] = {}
    notes: list[str] = []
    for variant in model_version.manifest.variants:
        if variants is not None and variant.name not in variants:
            continue
        if variant.backend == "torch":
            continue
        if variant.backend == "onnxruntime":
            runner = create_runner(
                model_version,
                variant.name,
                backend="onnxruntime",
                max_batch=batch_size,
                threads=threads,
                providers=("CPUExecutionProvider",),
            )
        else:
            try:
                runner = create_runner(
                    model_version, variant.name, backend="tensorrt", max_batch=batch_size, environment=env
                )
                runner.load()
            except EngineError as exc:
                notes.append(f"{variant.name}: not evaluated here ({exc})")
                continue
        with runner:
            logits = run_batched(runner, card, data, batch_size)
        results[variant.name] = accuracy_info(card, data, logits, reference_logits)
    if write:
        model_version.set_reference_accuracy(reference)
        for name, accuracy in results.items():
            model_version.set_accuracy(name, accuracy)
    return reference, results, notes


def accuracy_table(card: ModelCard, reference: AccuracyInfo, results: dict[str, AccuracyInfo]):
    """``| variant | overall acc | mean class acc (or mIoU) | agreement with fp32 | max |Δlogit| |`` (rich)."""
    from rich.table import Table

    segmentation = card.task != "classification"
    table = Table(title=f"variant accuracy ({reference.dataset} test, {reference.num_samples} samples)")
    table.add_column("variant")
    table.add_column("point acc" if segmentation else "overall acc", justify="right")
    table.add_column("mIoU" if segmentation else "mean class acc", justify="right")
    table.add_column("agreement with fp32", justify="right")
    table.add_column("max |Δlogit|", justify="right")
    for name, acc in [("pytorch fp32 (reference)", reference), *results.items()]:
        second = acc.mean_iou if segmentation else acc.mean_class_acc
        table.add_row(
            name,
            f"{100 * acc.overall_acc:.2f}%",
            f"{100 * second:.2f}%" if second is not None else "-",
            f"{100 * acc.agreement_with_fp32:.2f}%",
            f"{acc.max_abs_logit_diff:.2e}",
        )
    return table


def accuracy_markdown(card: ModelCard, reference: AccuracyInfo, results: dict[str, AccuracyInfo]) -> str:
    """The same table as Markdown (for notes and reports)."""
    segmentation = card.task != "classification"
    second_name = "mIoU" if segmentation else "mean class acc"
    lines = [
        f"| variant | overall acc | {second_name} | agreement with fp32 | max \\|Δlogit\\| |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, acc in [("pytorch fp32", reference), *results.items()]:
        second = acc.mean_iou if segmentation else acc.mean_class_acc
        second_text = f"{100 * second:.2f}%" if second is not None else "-"
        lines.append(
            f"| {name} | {100 * acc.overall_acc:.2f}% | {second_text} | {100 * acc.agreement_with_fp32:.2f}% "
            f"| {acc.max_abs_logit_diff:.2e} |"
        )
    return "\n".join(lines)


__all__ = ["EvalSet", "accuracy_info", "accuracy_markdown", "accuracy_table", "evaluate_variants", "load_eval_set"]
