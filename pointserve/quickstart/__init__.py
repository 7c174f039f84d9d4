"""``pointserve quickstart``: from nothing to a running service on the built-in ``shapes`` models.

The classifier's and the part-segmentation model's weights ship with pointserve (``weights/<name>/``: the
safetensors, the card with their test metrics, and the ``pointserve train`` config that produced them; the
script ``scripts/train_quickstart_models.py`` regenerates them bit for bit). The first start exports both into
a repository, builds the CPU variants (fp32, fp16, int8, int8-cpu), measures their accuracy against PyTorch and
their throughput, writes ``serve.yaml`` choosing, per model, the fastest variant whose accuracy is within 1 point of
fp32, and then serves from a fresh process (the build imported torch; the service does not need it).
``--retrain`` trains both models from scratch with the shipped configs instead. Every step is skipped when its
output exists, so a second start goes straight to serving.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_HOME = Path("quickstart")
SERVE_CONFIG = "serve.yaml"
ACCURACY_TOLERANCE_POINTS = 1.0


SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class QuickstartModel:
    """A quickstart model: its shipped checkpoint folder holds ``model.safetensors``, ``card.json``, ``train.yaml``."""

    name: str

    @property
    def shipped_checkpoint(self) -> Path:
        return SHIPPED_WEIGHTS / self.name

    @property
    def train_config(self) -> Path:
        return self.shipped_checkpoint / "train.yaml"


MODELS = (QuickstartModel("shapes-cls"), QuickstartModel("shapes-partseg"))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quickstart",
        help="build the quickstart repository if missing (train, export, quantize) and serve it",
        description="Export the shipped shapes classifier and part-segmentation model (or train them again with "
        "--retrain), quantize them, pick the fastest variant within 1 point of fp32, and serve them. Cached under "
        "--home: later starts only serve.",
    )
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="quickstart folder (default ./quickstart)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--build-only", action="store_true", help="build the repository, do not serve")
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="train both models from scratch with the shipped configs (about an hour on 2 cores) instead of "
        "exporting the shipped weights; needs an empty --home",
    )
    parser.set_defaults(handler=_quickstart)


def _quickstart(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(soft_wrap=True)
    home: Path = args.home
    config_path = home / SERVE_CONFIG
    if not config_path.is_file():
        build_quickstart(home, console, retrain=args.retrain)
    elif args.retrain:
        console.print(f"[red]--retrain needs a fresh --home: {home} already holds a built repository[/red]")
        return 2
    else:
        console.print(f"quickstart repository ready in {home} (delete {config_path} to rebuild)")
    if args.build_only:
        return 0
    serve_argv = ["serve", "--config", str(config_path), "--host", args.host, "--port", str(args.port)]
    if "torch" in sys.modules:
        # The build imported torch (≈ 700 MB resident): serve from a fresh interpreter that never loads it.
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", "pointserve", *serve_argv])
    from pointserve.cli import main

    return main(serve_argv)


def build_quickstart(home: Path, console, *, retrain: bool = False) -> Path:
    """Publish (or train), build, evaluate and choose variants; returns the path of ``serve.yaml``."""
    from pointserve.repository.store import Repository

    repository = Repository(home / "repository")
    choices: dict[str, dict] = {}
    for spec in MODELS:
        version = _ensure_model(spec, home, repository, console, retrain=retrain)
        choices[spec.name] = choose_variant(version, console)
    config = {"repository": str((home / "repository").resolve()), "models": choices}
    path = home / SERVE_CONFIG
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    console.print(f"wrote {path}")
    return path


def _ensure_model(spec: QuickstartModel, home: Path, repository, console, *, retrain: bool):
    from pointserve.engines.evaluate import accuracy_table, evaluate_variants
    from pointserve.export.publish import publish_checkpoint
    from pointserve.export.variants import ensure_onnx_variants

    if spec.name in repository.models():
        version = repository.open(spec.name)
    else:
        checkpoint = spec.shipped_checkpoint
        if retrain:
            checkpoint = home / "runs" / spec.name / "best"
            if not (checkpoint / "card.json").is_file():
                checkpoint = _train(spec, home, console)
        with console.status(f"exporting {spec.name}") as status:
            version, _ = publish_checkpoint(checkpoint, repository.root, spec.name, status=status.update)
    with console.status(f"building the CPU variants of {spec.name}") as status:
        for step in ensure_onnx_variants(version, log=status.update):
            took = f" in {step.seconds:.1f}s" if step.seconds else ""
            console.print(f"  {spec.name}: {step.variant} {step.action}{took}")
    if any(v.accuracy is None for v in version.manifest.variants if v.backend == "onnxruntime"):
        with console.status(f"measuring the accuracy of every variant of {spec.name}"):
            reference, results, _ = evaluate_variants(version)
        console.print(accuracy_table(version.card, reference, results))
    return version


def _train(spec: QuickstartModel, home: Path, console) -> Path:
    from pointserve.training.config import TrainConfig
    from pointserve.training.trainer import Trainer

    out = home / "runs" / spec.name
    config = TrainConfig.from_sources(str(spec.train_config), {"output_dir": str(out)})
    Trainer(config, console=console).run()
    return out / "best"


def _main_accuracy(accuracy) -> float:
    return accuracy.mean_iou if accuracy.mean_iou is not None else accuracy.overall_acc


def choose_variant(version, console, *, batch: int = 8, num_points: int = 1024, duration_s: float = 2.0) -> dict:
    """The fastest ONNX variant whose accuracy is within 1 point of fp32 (throughput measured here, now)."""
    from pointserve.bench.compare import run_interleaved
    from pointserve.bench.engine_bench import BenchConfig
    from pointserve.bench.targets import resolve_targets

    manifest = version.manifest
    fp32 = _main_accuracy(manifest.variant("fp32").accuracy)
    eligible = [
        v.name
        for v in manifest.variants
        if v.backend == "onnxruntime"
        and v.accuracy is not None
        and 100 * (fp32 - _main_accuracy(v.accuracy)) <= ACCURACY_TOLERANCE_POINTS
    ]
    targets = resolve_targets(str(version.path), variants=eligible, backends="onnxruntime")
    config = BenchConfig(batch=batch, num_points=num_points, duration_s=duration_s, warmup_ms=300)
    with console.status(f"timing {', '.join(eligible)} of {version.name} (batch {batch}, {num_points} points)"):
        results = run_interleaved(targets, [batch], config, rounds=2)
    speed = {r.target.variant: r.clouds_per_s for r in results}
    best = max(speed, key=speed.get)
    for name, value in sorted(speed.items(), key=lambda kv: -kv[1]):
        acc = _main_accuracy(manifest.variant(name).accuracy)
        mark = "  <- served" if name == best else ""
        console.print(f"  {version.name} {name}: {value:.1f} clouds/s, accuracy {100 * acc:.2f}%{mark}")
    return {"variant": best}
