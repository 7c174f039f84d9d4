"""``pointserve build``, ``pointserve evaluate-variants`` and ``pointserve doctor``."""

from __future__ import annotations

import argparse

from pointserve.arguments import add_model_version_args
from pointserve.calibration.commands import add_search_args, search_options
from pointserve.calibration.quantize import METHODS
from pointserve.calibration.sources import CALIBRATION_DATA_HELP
from pointserve.repository.manifest import BACKENDS


def register(subparsers: argparse._SubParsersAction) -> None:
    build = subparsers.add_parser(
        "build",
        help="build a model version's variants: ONNX fp16/int8 (onnxruntime, default) or TensorRT plans",
        description="onnxruntime (default): make sure the fp32, fp16 and int8 ONNX variants exist. "
        "tensorrt: build one plan per precision from the matching ONNX variant (needs a GPU and TensorRT).",
    )
    add_model_version_args(build)
    build.add_argument("--backend", choices=[b for b in BACKENDS if b != "torch"], default="onnxruntime")
    build.add_argument("--precision", default="all", help="fp32, tf32, fp16, int8, a comma list, or all (default: all)")
    build.add_argument("--force", action="store_true", help="rebuild variants that already exist")
    build.add_argument("--checkpoint", help="also keep this checkpoint's weights as the fp32-torch reference variant")
    calib = build.add_argument_group("int8 calibration")
    calib.add_argument("--calibration-method", choices=METHODS, default=None)
    calib.add_argument("--calibration-samples", type=int, default=None, help="clouds in the calibration set")
    calib.add_argument("--calibration-seed", type=int, default=None)
    calib.add_argument("--data-root", help="folder of an on-disk training dataset (for the calibration set)")
    calib.add_argument("--calibration-data", metavar="SPEC", help=CALIBRATION_DATA_HELP)
    add_search_args(calib)
    trt = build.add_argument_group("tensorrt")
    for flag in ("min-batch", "opt-batch", "max-batch", "min-points", "opt-points", "max-points"):
        trt.add_argument(f"--{flag}", type=int, dest=flag.replace("-", "_"))
    trt.add_argument("--workspace-mib", type=int, default=None, help="builder workspace limit (default 2048)")
    trt.add_argument("--timing-cache-dir", help="default <repository>/.cache/tensorrt")
    build.set_defaults(handler=_build)

    evaluate = subparsers.add_parser(
        "evaluate-variants",
        help="each variant's accuracy on the test split (ONNX Runtime CPU) next to PyTorch fp32; saved in the manifest",
    )
    add_model_version_args(evaluate)
    evaluate.add_argument("--dataset", help="dataset name (default: the card's)")
    evaluate.add_argument("--data-root", help="folder of an on-disk dataset")
    evaluate.add_argument("--max-samples", type=int, help="evaluate a fixed seeded subset of this many clouds")
    evaluate.add_argument("--checkpoint", help="PyTorch reference checkpoint (default: the fp32-torch variant)")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    evaluate.add_argument("--variants", help="comma list of variants (default: all)")
    evaluate.add_argument("--no-write", action="store_true", help="print only; leave the manifest as it is")
    evaluate.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    evaluate.set_defaults(handler=_evaluate)


def _resolve(args: argparse.Namespace):
    from pointserve.repository.commands import resolve_model_version

    return resolve_model_version(args.model, args.repository, args.version)


def _build(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from pointserve.engines.build import build_tensorrt_plans
    from pointserve.export.variants import ensure_onnx_variants, expand_precisions
    from pointserve.repository.publish import add_reference_weights

    console = Console()
    model_version = _resolve(args)
    precisions = expand_precisions(args.precision.split(",") if "," in args.precision else args.precision, args.backend)
    calibration = {
        key: value
        for key, value in (
            ("method", args.calibration_method),
            ("num_samples", args.calibration_samples),
            ("seed", args.calibration_seed),
        )
        if value is not None
    }
    calibration["progress"] = True
    calibration.update(search_options(args))
    if "target_agreement" in calibration:
        calibration["log"] = console.print
    if args.data_root:
        calibration["dataset_root"] = args.data_root
    if args.calibration_data:
        calibration["calibration_data"] = args.calibration_data
    if args.checkpoint:
        add_reference_weights(model_version, args.checkpoint)
    if args.backend == "onnxruntime":
        steps = ensure_onnx_variants(
            model_version, precisions, force=args.force, calibration=calibration, log=console.print
        )
    else:
        from pointserve.engines.tensorrt.plan import profile_from_flags
        from pointserve.models.registry import get_spec

        card = model_version.card
        profile = profile_from_flags(
            card.num_points,
            channels=card.in_channels,
            needs_category=card.needs_category,
            inputs=model_version.manifest.inputs,  # the graph's own tensors, whatever the family
            min_batch=args.min_batch,
            opt_batch=args.opt_batch,
            max_batch=args.max_batch,
            min_points=args.min_points,
            opt_points=args.opt_points,
            max_points=args.max_points,
            concat=get_spec(card.architecture).collate == "concat",
        )
        steps = build_tensorrt_plans(
            model_version,
            precisions,
            profile,
            workspace_mib=args.workspace_mib or 2048,
            timing_cache_dir=args.timing_cache_dir,
            force=args.force,
            calibration=calibration,
            log=console.print,
        )
    table = Table(title=f"{model_version.name} v{model_version.version}: {args.backend} variants")
    for column in ("variant", "action", "seconds", "detail"):
        table.add_column(column)
    for step in steps:
        table.add_row(step.variant, step.action, f"{step.seconds:.1f}" if step.seconds else "-", step.detail)
    console.print(table)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pointserve.engines.evaluate import accuracy_markdown, accuracy_table, evaluate_variants

    console = Console()
    model_version = _resolve(args)
    reference, results, notes = evaluate_variants(
        model_version,
        dataset=args.dataset,
        data_root=args.data_root,
        max_samples=args.max_samples,
        checkpoint=args.checkpoint,
        batch_size=args.batch_size,
        threads=args.threads,
        variants=args.variants.split(",") if args.variants else None,
        write=not args.no_write,
    )
    console.print(accuracy_table(model_version.card, reference, results))
    for note in notes:
        console.print(f"[yellow]{note}")
    if args.markdown:
        print(accuracy_markdown(model_version.card, reference, results))
    if not args.no_write:
        console.print(f"written to {model_version.manifest_path}")
    return 0
