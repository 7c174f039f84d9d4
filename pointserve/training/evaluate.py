"""Evaluate a model on a dataset split and present the result as a table (and JSON)."""

from __future__ import annotations

import torch
from rich.console import Console
from rich.table import Table

from pointserve.card import ModelCard
from pointserve.data.base import PointCloudDataset
from pointserve.metrics import card_metrics
from pointserve.training.loop import predict_logits


def evaluate_model(
    model: torch.nn.Module, card: ModelCard, dataset: PointCloudDataset, batch_size: int = 32, device: str = "cpu"
) -> dict:
    """The task's metrics (:func:`pointserve.metrics.card_metrics`) of ``model`` on ``dataset``."""
    logits, labels, seg = predict_logits(model, card, dataset, batch_size, device)
    return card_metrics(card, logits, labels, seg)


def headline(metrics: dict) -> dict[str, float]:
    """The few numbers worth a summary line (and the model card)."""
    keys = ("overall_acc", "mean_class_acc", "miou", "instance_miou", "class_miou", "point_acc")
    return {k: round(float(metrics[k]), 4) for k in keys if k in metrics}


def metrics_table(metrics: dict, title: str) -> Table:
    table = Table(title=title)
    if "per_class_acc" in metrics:
        table.add_column("class")
        table.add_column("accuracy", justify="right")
        for name, acc in metrics["per_class_acc"].items():
            table.add_row(name, f"{100 * acc:.2f}%")
        table.add_section()
        table.add_row("[b]overall accuracy[/b]", f"[b]{100 * metrics['overall_acc']:.2f}%[/b]")
        table.add_row("[b]mean class accuracy[/b]", f"[b]{100 * metrics['mean_class_acc']:.2f}%[/b]")
    elif "per_class_iou" in metrics:  # semantic segmentation: IoU per label over the whole split
        table.add_column("class")
        table.add_column("IoU", justify="right")
        for name, iou in metrics["per_class_iou"].items():
            table.add_row(name, f"{100 * iou:.2f}%")
        table.add_section()
        table.add_row("[b]mIoU[/b]", f"[b]{100 * metrics['miou']:.2f}%[/b]")
        table.add_row("point accuracy", f"{100 * metrics['point_acc']:.2f}%")
    else:
        table.add_column("category")
        table.add_column("mIoU", justify="right")
        for name, miou in metrics["per_category_miou"].items():
            table.add_row(name, f"{100 * miou:.2f}%")
        table.add_section()
        table.add_row("[b]instance mIoU[/b]", f"[b]{100 * metrics['instance_miou']:.2f}%[/b]")
        table.add_row("[b]class mIoU[/b]", f"[b]{100 * metrics['class_miou']:.2f}%[/b]")
        table.add_row("point accuracy", f"{100 * metrics['point_acc']:.2f}%")
    table.caption = f"{metrics['num_samples']} samples"
    return table


def print_metrics(metrics: dict, title: str, console: Console | None = None) -> None:
    (console or Console()).print(metrics_table(metrics, title))
