"""The training loop: AdamW/Adam, step or cosine schedule, autocast, per-epoch and best checkpoints, resume.

Output folder layout::

    <output_dir>/config.yaml          the resolved configuration
    <output_dir>/last/                checkpoint after the latest epoch (+ training_state for resume)
    <output_dir>/best/                checkpoint with the best test metric
    <output_dir>/epochs/epoch_NNN/    one checkpoint per epoch
    <output_dir>/metrics.json         the best checkpoint's full evaluation
"""

from __future__ import annotations

import json
import math
import random
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from rich.console import Console
from tqdm import tqdm

from pointserve.card import ModelCard
from pointserve.checkpoint import load_checkpoint, save_checkpoint
from pointserve.data import load_dataset
from pointserve.errors import CheckpointError, ConfigError
from pointserve.models import get_spec
from pointserve.training.config import TrainConfig
from pointserve.training.evaluate import evaluate_model, headline
from pointserve.training.loop import iterate_batches, model_forward

STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available")
    return name


def _main_metric(metrics: dict) -> float:
    return metrics.get("overall_acc", metrics.get("instance_miou", 0.0))


def _save_training_state(directory: Path, optimizer, scheduler, epoch: int, best: float, rng) -> None:
    """Optimizer tensors go to safetensors and everything else to JSON: resume without pickle."""
    from safetensors.torch import save_file

    opt_state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, slots in opt_state["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    tensors["torch_rng"] = torch.get_rng_state()
    save_file(tensors, str(directory / STATE_TENSORS))
    state = {
        "epoch": epoch,
        "best_metric": best,
        "param_groups": opt_state["param_groups"],
        "optimizer_scalars": scalars,
        "scheduler": scheduler.state_dict() if scheduler else None,
        "numpy_rng": rng.bit_generator.state,
    }
    (directory / STATE_JSON).write_text(json.dumps(state, indent=1, default=float))


def _load_training_state(directory: Path, optimizer, scheduler, rng) -> tuple[int, float]:
    from safetensors.torch import load_file

    if not (directory / STATE_JSON).is_file():
        raise CheckpointError(f"{directory}: nothing to resume from (no {STATE_JSON})")
    state = json.loads((directory / STATE_JSON).read_text())
    tensors = load_file(str(directory / STATE_TENSORS))
    slots: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            slots.setdefault(int(index), {})[key] = value
    for name, value in state["optimizer_scalars"].items():
        index, key = name.split(".", 1)
        slots.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": slots, "param_groups": state["param_groups"]})
    if scheduler and state["scheduler"]:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(tensors["torch_rng"])
    rng.bit_generator.state = state["numpy_rng"]
    return int(state["epoch"]), float(state["best_metric"])


class Trainer:
    """Trains one model from a :class:`TrainConfig`; ``run()`` returns the best checkpoint's metrics."""

    def __init__(self, config: TrainConfig, console: Console | None = None):
        self.config = config
        self.console = console or Console(soft_wrap=True)
        self.device = resolve_device(config.device)
        self.amp = config.amp if config.amp is not None else self.device.startswith("cuda")
        self.out = Path(config.output_dir)

    def _setup_determinism(self) -> None:
        cfg = self.config
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False

    def _autocast(self):
        if not self.amp:
            return nullcontext()
        dtype = torch.float16 if self.device.startswith("cuda") else torch.bfloat16
        return torch.autocast(device_type=self.device.split(":")[0], dtype=dtype)

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is an optional extra
            return None
        return SummaryWriter(log_dir=str(self.out / "tensorboard"))

    def run(self) -> dict:
        cfg = self.config
        self._setup_determinism()
        options = {"root": cfg.data_root, "task": cfg.task, "num_points": cfg.num_points, "seed": cfg.seed}
        with self.console.status(f"loading {cfg.dataset} ({cfg.task})"):
            train_set = load_dataset(cfg.dataset, "train", samples_per_class=cfg.samples_per_class, **options)
            test_set = load_dataset(cfg.dataset, "test", samples_per_class=cfg.test_samples_per_class, **options)
        spec = get_spec(cfg.model)
        options = cfg.options()
        card = ModelCard(
            architecture=cfg.model,
            config=spec.model_config(train_set, options),
            preprocessing=spec.preprocessing(options),
            task=cfg.task,  # type: ignore[arg-type]
            class_names=train_set.class_names,
            part_names=train_set.part_names,
            category_parts=train_set.category_parts,
            in_channels=train_set.in_channels,
            num_points=cfg.num_points,
            dataset=cfg.dataset,
            data_hash=train_set.content_hash(),
        )
        model = spec.build(card).to(self.device)
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        optimizer = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = None
        if cfg.scheduler == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
        elif cfg.scheduler == "step":
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.step_size_epochs, cfg.gamma)
        scaler = torch.amp.GradScaler("cuda") if self.amp and self.device.startswith("cuda") else None
        rng = np.random.default_rng(cfg.seed)
        start_epoch, best = 0, -math.inf
        if cfg.resume:
            model_state, _ = load_checkpoint(self.out / "last")
            model.load_state_dict(model_state.state_dict())
            start_epoch, best = _load_training_state(self.out / "last", optimizer, scheduler, rng)
            self.console.print(f"resuming after epoch {start_epoch} (best so far {best:.4f})")
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
        writer = self._tensorboard()
        self.console.print(
            f"training {cfg.model} on {cfg.dataset}: {len(train_set)} train / {len(test_set)} test clouds, "
            f"{cfg.num_points} points, {cfg.epochs} epochs, device {self.device}, amp {'on' if self.amp else 'off'}"
        )
        best_metrics: dict = {}
        run_started = time.perf_counter()
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            started = time.perf_counter()
            loss, acc = self._train_epoch(model, card, optimizer, scaler, train_set, rng, epoch)
            if scheduler:
                scheduler.step()
            metrics: dict = {}
            if epoch % cfg.eval_every_epochs == 0 or epoch == cfg.epochs:
                metrics = evaluate_model(model, card, test_set, cfg.batch_size, self.device)
            summary = headline(metrics)
            line = f"epoch {epoch}/{cfg.epochs}  loss {loss:.4f}  train acc {acc:.4f}  " + "  ".join(
                f"test {k} {v:.4f}" for k, v in summary.items()
            )
            self.console.print(line + f"  ({time.perf_counter() - started:.0f}s)")
            if writer:
                writer.add_scalar("train/loss", loss, epoch)
                for key, value in summary.items():
                    writer.add_scalar(f"test/{key}", value, epoch)
            card = card.model_copy(update={"metrics": summary})
            save_checkpoint(model, card, self.out / "epochs" / f"epoch_{epoch:03d}")
            save_checkpoint(model, card, self.out / "last")
            _save_training_state(self.out / "last", optimizer, scheduler, epoch, max(best, _main_metric(metrics)), rng)
            if metrics and _main_metric(metrics) > best:
                best, best_metrics = _main_metric(metrics), metrics
                save_checkpoint(model, card, self.out / "best")
                (self.out / "metrics.json").write_text(json.dumps(best_metrics, indent=2))
        if writer:
            writer.close()
        self.console.print(f"training finished in {time.perf_counter() - run_started:.0f}s")
        if not best_metrics and (self.out / "metrics.json").is_file():
            best_metrics = json.loads((self.out / "metrics.json").read_text())
        return best_metrics

    def _train_epoch(self, model, card, optimizer, scaler, dataset, rng, epoch: int) -> tuple[float, float]:
        cfg = self.config
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        batches = iterate_batches(dataset, card, cfg.batch_size, rng, train=True, device=self.device)
        steps = len(dataset) // cfg.batch_size + (len(dataset) % cfg.batch_size > 1)
        for batch in tqdm(batches, total=steps, desc=f"epoch {epoch}", leave=False, unit="batch"):
            optimizer.zero_grad(set_to_none=True)
            with self._autocast():
                logits, auxiliary = model_forward(model, card, batch, with_aux=True)
                target = batch.labels if batch.seg is None else batch.seg
                loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1))
                if auxiliary is not None:
                    loss = loss + cfg.feature_transform_weight * auxiliary
            if scaler:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            total_loss += loss.item() * len(batch.labels)
            correct += int((logits.argmax(-1) == target).sum())
            seen += target.numel()
        return total_loss / max(1, len(dataset)), correct / max(1, seen)
