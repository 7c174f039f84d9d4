"""``pointserve train`` and ``pointserve evaluate``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a registered architecture (default: the PointNet classifier on the built-in shapes dataset)",
        description="Train a model. Flags override the YAML --config file; unset flags keep its values.",
    )
    train.add_argument("--config", help="YAML file with TrainConfig fields")
    train.add_argument(
        "--model", help="a registered architecture (pointserve.models.list_models()); default pointnet_cls"
    )
    train.add_argument("--dataset", help="dataset name (default shapes); see pointserve.data.DATASETS")
    train.add_argument("--data-root", dest="data_root", help="folder of an on-disk dataset")
    train.add_argument("--num-points", dest="num_points", type=int, help="points per cloud (default 256)")
    train.add_argument(
        "--samples-per-class", dest="samples_per_class", type=int, help="shapes: train objects per class"
    )
    train.add_argument(
        "--test-samples-per-class", dest="test_samples_per_class", type=int, help="shapes: test objects per class"
    )
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", dest="batch_size", type=int)
    train.add_argument("--optimizer", choices=["adam", "adamw"])
    train.add_argument("--lr", type=float)
    train.add_argument("--weight-decay", dest="weight_decay", type=float)
    train.add_argument(
        "--scheduler",
        choices=["step", "cosine", "plateau", "none"],
        help="learning-rate schedule (default cosine); plateau cuts the rate when training accuracy stops improving",
    )
    train.add_argument(
        "--plateau-patience", dest="plateau_patience", type=int, help="plateau: epochs without improvement (20)"
    )
    train.add_argument("--plateau-factor", dest="plateau_factor", type=float, help="plateau: rate factor (0.2)")
    train.add_argument("--feature-transform", dest="feature_transform", action="store_true", default=None)
    train.add_argument("--seed", type=int)
    train.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, ...")
    amp = train.add_mutually_exclusive_group()
    amp.add_argument("--amp", dest="amp", action="store_true", default=None, help="mixed precision on")
    amp.add_argument("--no-amp", dest="amp", action="store_false", help="mixed precision off")
    determinism = train.add_mutually_exclusive_group()
    determinism.add_argument(
        "--deterministic",
        dest="deterministic",
        action="store_true",
        default=None,
        help="torch's deterministic algorithms (default: on for CPU, off for CUDA)",
    )
    determinism.add_argument(
        "--no-deterministic", dest="deterministic", action="store_false", help="allow non-deterministic kernels"
    )
    train.add_argument("--threads", type=int, help="torch CPU threads")
    train.add_argument("-o", "--output-dir", dest="output_dir", help="run folder (default runs/<model>)")
    train.add_argument("--resume", action="store_true", default=None, help="continue from <output-dir>/last")
    train.add_argument(
        "--cache-epochs",
        dest="cache_epochs",
        type=int,
        metavar="N",
        help="compute N augmented copies of the training split once (the family's preprocessing included) and "
        "cycle over them: epoch e trains on copy (e-1) %% N; reused by later runs with the same data and settings",
    )
    train.add_argument(
        "--cache-dir",
        dest="cache_dir",
        help="folder of cached epochs (default $POINTSERVE_CACHE, else ~/.cache/pointserve/epochs)",
    )
    train.set_defaults(handler=_train)

    evaluate = subparsers.add_parser("evaluate", help="evaluate a checkpoint and print its metrics table")
    evaluate.add_argument("checkpoint", help="checkpoint folder (model.safetensors + card.json)")
    evaluate.add_argument("--dataset", help="dataset name (default: the one in the card)")
    evaluate.add_argument("--data-root", help="folder of an on-disk dataset")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument(
        "--json", dest="json_path", help="where to write the metrics (default <checkpoint>/eval.json)"
    )
    evaluate.set_defaults(handler=_evaluate)


def _train(args: argparse.Namespace) -> int:
    from pointserve.training.config import TrainConfig

    overrides = {k: v for k, v in vars(args).items() if k not in {"config", "handler", "command"}}
    if overrides.get("output_dir") is None and overrides.get("model"):
        overrides["output_dir"] = f"runs/{overrides['model']}"
    config = TrainConfig.from_sources(args.config, overrides)  # validated before torch is imported

    from pointserve.training.evaluate import print_metrics
    from pointserve.training.trainer import Trainer

    metrics = Trainer(config).run()
    if metrics:
        print_metrics(metrics, f"{config.model} on {config.dataset} (test split, best epoch)")
    print(f"best checkpoint: {Path(config.output_dir) / 'best'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from pointserve.checkpoint import load_checkpoint
    from pointserve.data import load_dataset
    from pointserve.training.evaluate import evaluate_model, print_metrics

    model, card = load_checkpoint(args.checkpoint)
    dataset = load_dataset(
        args.dataset or card.dataset, args.split, root=args.data_root, task=card.task, num_points=card.num_points
    )
    metrics = evaluate_model(model, card, dataset, args.batch_size)
    print_metrics(metrics, f"{card.architecture} on {dataset.name} ({args.split} split)")
    out = Path(args.json_path) if args.json_path else Path(args.checkpoint) / "eval.json"
    out.write_text(json.dumps(metrics, indent=2))
    print(f"metrics written to {out}")
    return 0
