"""The training loop: AdamW/Adam, step, cosine or plateau schedule, autocast, per-epoch and best checkpoints,
resume, and (``cache_epochs``) training from cached augmented epochs (:mod:`pointserve.training.epoch_cache`).

Output folder layout::

    <output_dir>/config.yaml          the resolved configuration
    <output_dir>/last/                checkpoint after the latest epoch (+ training_state for resume)
    <output_dir>/best/                checkpoint with the best test metric
    <output_dir>/epochs/epoch_NNN/    one checkpoint per epoch
    <output_dir>/metrics.json         the best checkpoint's full evaluation

Reproducibility: a CPU run is reproducible bit for bit (same seed, torch build and thread count), and so is a run
resumed after any epoch: every random stream is seeded from ``seed`` and saved with ``last/`` (torch's generator
for dropout and initialisation, the numpy generator that draws batch orders and live augmentations, the
scheduler, the AMP scaler), batches come in one order (no worker processes), and ``deterministic`` (default: on
for CPU, off for CUDA) turns on torch's deterministic algorithms, without which an accumulating index_put (the
backward of a neighbour gather) adds in thread order. On CUDA, ``deterministic: true`` also needs cuBLAS's fixed
workspace, set here when the environment does not set it. tqdm and rich draw no random numbers.
The torch settings a run changes (threads, deterministic algorithms, cuDNN flags) are restored when it returns.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from rich.console import Console
from tqdm import tqdm

from pointserve.card import WEIGHTS_FILE, ModelCard
from pointserve.checkpoint import load_checkpoint, save_checkpoint
from pointserve.data import load_dataset
from pointserve.errors import CheckpointError, ConfigError
from pointserve.files import atomic_write_text, sha256_file
from pointserve.models import get_spec
from pointserve.training.config import TrainConfig
from pointserve.training.evaluate import evaluate_model, headline
from pointserve.training.loop import iterate_batches, model_forward, train_steps

STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available")
    return name


def _main_metric(metrics: dict) -> float:
    return metrics.get("overall_acc", metrics.get("miou", metrics.get("instance_miou", 0.0)))


def _save_training_state(directory: Path, optimizer, scheduler, scaler, epoch: int, best: float, rng) -> None:
    """Optimizer tensors go to safetensors and everything else to JSON: resume without pickle.

    The JSON rides in the safetensors file's metadata too, so one atomic rename replaces the whole state
    (``training_state.json`` is its readable copy, and what states written before that are read from). It is
    written after ``model.safetensors``, whose sha256 it records: a run interrupted between the two is resumed
    from weights that match the state (:func:`_resume_weights`), never from a mix of two epochs. Non-finite
    floats (ReduceLROnPlateau's ``mode_worse`` is -inf) are written as JSON's ``-Infinity`` / ``NaN``
    extensions, which :func:`json.loads` reads back.
    """
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
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["cuda_rng"] = torch.cuda.get_rng_state()
    state = {
        "epoch": epoch,
        "best_metric": best,
        "param_groups": opt_state["param_groups"],
        "optimizer_scalars": scalars,
        "scheduler": scheduler.state_dict() if scheduler else None,
        "scaler": scaler.state_dict() if scaler else None,
        "numpy_rng": rng.bit_generator.state,
        "weights_sha256": sha256_file(directory / WEIGHTS_FILE),
    }
    text = json.dumps(state, indent=1, default=float)
    tmp = directory / (STATE_TENSORS + ".tmp")
    save_file(tensors, str(tmp), metadata={"state": text})
    tmp.replace(directory / STATE_TENSORS)
    atomic_write_text(directory / STATE_JSON, text)


def _read_training_state(directory: Path) -> dict:
    """The JSON half of the training state (epoch, best metric, optimizer groups, scheduler, generators)."""
    from safetensors import safe_open

    if not (directory / STATE_TENSORS).is_file():
        raise CheckpointError(f"{directory}: nothing to resume from (no {STATE_TENSORS})")
    with safe_open(str(directory / STATE_TENSORS), framework="pt") as handle:
        text = (handle.metadata() or {}).get("state")
    if text is None:  # written before the state moved into the metadata
        if not (directory / STATE_JSON).is_file():
            raise CheckpointError(f"{directory}: nothing to resume from (no {STATE_JSON})")
        text = (directory / STATE_JSON).read_text()
    return json.loads(text)


def _load_training_state(directory: Path, state: dict, optimizer, scheduler, scaler, rng) -> None:
    """Restore optimizer, scheduler, scaler and random generators. Called after the model is built and its
    weights loaded: building a module draws from torch's generator, which must be restored last."""
    from safetensors.torch import load_file

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
    if scaler and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(tensors["torch_rng"])
    if "cuda_rng" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda_rng"])
    rng.bit_generator.state = state["numpy_rng"]


def _resume_weights(out: Path, state: dict) -> Path:
    """The checkpoint folder whose weights are the ones the training state was saved with: ``last/`` unless
    the run stopped after writing the next epoch's weights but before its state (then ``epochs/epoch_NNN``)."""
    expected = state.get("weights_sha256")
    candidates = [out / "last", out / "epochs" / f"epoch_{int(state['epoch']):03d}"]
    for folder in candidates:
        if expected is None or ((folder / WEIGHTS_FILE).is_file() and sha256_file(folder / WEIGHTS_FILE) == expected):
            return folder
    raise CheckpointError(f"{out}: no saved weights match the training state of epoch {state['epoch']}")


class Trainer:
    """Trains one model from a :class:`TrainConfig`; ``run()`` returns the best checkpoint's metrics."""

    def __init__(self, config: TrainConfig, console: Console | None = None):
        self.config = config
        self.console = console or Console(soft_wrap=True)
        self.device = resolve_device(config.device)
        self.amp = config.amp if config.amp is not None else self.device.startswith("cuda")
        self.deterministic = (
            config.deterministic if config.deterministic is not None else not self.device.startswith("cuda")
        )
        self.out = Path(config.output_dir)

    @contextmanager
    def _torch_settings(self):
        """Seed every generator and apply the run's torch settings; restore the process's settings afterwards
        (a run inside a larger process, such as the tests or the quickstart, must not leave them changed)."""
        cfg = self.config
        saved = (
            torch.get_num_threads(),
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic,
        )
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if self.deterministic:
            if self.device.startswith("cuda"):  # cuBLAS is deterministic only with a fixed workspace
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        try:
            yield
        finally:
            torch.set_num_threads(saved[0])
            torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
            torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[3], saved[4]

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

    def _scheduler(self, optimizer):
        cfg = self.config
        if cfg.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
        if cfg.scheduler == "step":
            return torch.optim.lr_scheduler.StepLR(optimizer, cfg.step_size_epochs, cfg.gamma)
        if cfg.scheduler == "plateau":  # monitors training accuracy, as the pcn reference does
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience
            )
        return None

    def _epoch_cache(self, train_set, card):
        from pointserve.training.epoch_cache import EpochCache, default_cache_dir

        cfg = self.config
        cache_dir = cfg.cache_dir or default_cache_dir()
        log = lambda message: self.console.print(message, markup=False, highlight=False)  # noqa: E731
        return EpochCache(cache_dir, train_set, card, cfg.seed, cfg.cache_epochs, log=log).prepare()

    def run(self) -> dict:
        with self._torch_settings():
            return self._run()

    def _run(self) -> dict:
        cfg = self.config
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
            normalization=spec.normalization,
            dataset=cfg.dataset,
            data_hash=train_set.content_hash(),
        )
        model = spec.build(card).to(self.device)
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        optimizer = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = self._scheduler(optimizer)
        scaler = torch.amp.GradScaler("cuda") if self.amp and self.device.startswith("cuda") else None
        rng = np.random.default_rng(cfg.seed)
        start_epoch, best = 0, -math.inf
        if cfg.resume:
            state = _read_training_state(self.out / "last")
            model_state, _ = load_checkpoint(_resume_weights(self.out, state))
            model.load_state_dict(model_state.state_dict())
            _load_training_state(self.out / "last", state, optimizer, scheduler, scaler, rng)
            start_epoch, best = int(state["epoch"]), float(state["best_metric"])
            self.console.print(f"resuming after epoch {start_epoch} (best so far {best:.4f})")
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
        cache = self._epoch_cache(train_set, card) if cfg.cache_epochs else None
        writer = self._tensorboard()
        self.console.print(
            f"training {cfg.model} on {cfg.dataset}: {len(train_set)} train / {len(test_set)} test clouds, "
            f"{cfg.num_points} points, {cfg.epochs} epochs, device {self.device}, amp {'on' if self.amp else 'off'}"
            + (f", {cfg.cache_epochs} cached epochs" if cache else "")
        )
        best_metrics: dict = {}
        run_started = time.perf_counter()
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            started = time.perf_counter()
            if cache is not None:
                batches = cache.batches(epoch, cfg.batch_size, rng, device=self.device)
            else:
                batches = iterate_batches(train_set, card, cfg.batch_size, rng, train=True, device=self.device)
            loss, acc = self._train_epoch(model, card, optimizer, scaler, batches, len(train_set), epoch)
            lr = optimizer.param_groups[0]["lr"]  # the rate this epoch trained with
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(acc)
            elif scheduler:
                scheduler.step()
            metrics: dict = {}
            if epoch % cfg.eval_every_epochs == 0 or epoch == cfg.epochs:
                metrics = evaluate_model(model, card, test_set, cfg.batch_size, self.device)
            summary = headline(metrics)
            line = f"epoch {epoch}/{cfg.epochs}  loss {loss:.4f}  train acc {acc:.4f}  lr {lr:.3g}  " + "  ".join(
                f"test {k} {v:.4f}" for k, v in summary.items()
            )
            self.console.print(line + f"  ({time.perf_counter() - started:.0f}s)")
            if writer:
                writer.add_scalar("train/loss", loss, epoch)
                writer.add_scalar("train/acc", acc, epoch)
                writer.add_scalar("train/lr", lr, epoch)
                for key, value in summary.items():
                    writer.add_scalar(f"test/{key}", value, epoch)
            card = card.model_copy(update={"metrics": summary})
            save_checkpoint(model, card, self.out / "epochs" / f"epoch_{epoch:03d}")
            save_checkpoint(model, card, self.out / "last")
            improved = bool(metrics) and _main_metric(metrics) > best
            if improved:
                best, best_metrics = _main_metric(metrics), metrics
            # the state holds the best metric as the uninterrupted run holds it (-inf until an evaluation)
            _save_training_state(self.out / "last", optimizer, scheduler, scaler, epoch, best, rng)
            if improved:
                save_checkpoint(model, card, self.out / "best")
                (self.out / "metrics.json").write_text(json.dumps(best_metrics, indent=2))
        if writer:
            writer.close()
        self.console.print(f"training finished in {time.perf_counter() - run_started:.0f}s")
        if not best_metrics and (self.out / "metrics.json").is_file():
            best_metrics = json.loads((self.out / "metrics.json").read_text())
        return best_metrics

    def _train_epoch(self, model, card, optimizer, scaler, batches, size: int, epoch: int) -> tuple[float, float]:
        """One pass over ``batches``; returns (mean loss per cloud, training accuracy per prediction)."""
        cfg = self.config
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        steps = train_steps(size, cfg.batch_size)
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
        return total_loss / max(1, size), correct / max(1, seen)
