"""``pointserve calibrate``: build a model version's calibration set and its int8 Q/DQ variant."""

from __future__ import annotations

import argparse

from pointserve.calibration.dataset import DEFAULT_NUM_SAMPLES
from pointserve.calibration.quantize import METHODS

DEFAULT_REPOSITORY = "repository"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="build the calibration set and the int8 (Q/DQ) ONNX variant of a model version",
        description="Draw clouds from the model's training split with the training transforms, save them as "
        "<version>/calibration/*.npz (hash recorded), compute symmetric int8 scales (cached) and store the "
        "int8 Q/DQ graph as the version's 'int8' variant.",
    )
    parser.add_argument("model", help="version folder, model folder, or model name (name or name:version)")
    parser.add_argument("--repository", default=DEFAULT_REPOSITORY, help="repository folder (default ./repository)")
    parser.add_argument("--version", type=int, help="version number (default: the latest)")
    parser.add_argument("--num-samples", type=int, default=DEFAULT_NUM_SAMPLES, help="calibration clouds (256)")
    parser.add_argument("--seed", type=int, default=0, help="seed for drawing and augmenting the clouds (0)")
    parser.add_argument("--method", choices=METHODS, default="minmax", help="calibration method (minmax)")
    parser.add_argument("--data-root", help="dataset folder, for datasets read from disk (not needed for shapes)")
    parser.set_defaults(handler=_calibrate)


def _calibrate(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from rich.console import Console

    from pointserve.calibration.dataset import build_calibration_set
    from pointserve.calibration.qdq import check_qdq_graph
    from pointserve.calibration.quantize import keep_input_layers_float_for, quantize_int8
    from pointserve.errors import ModelNotFoundError
    from pointserve.repository.commands import resolve_model_version

    console = Console()
    version = resolve_model_version(args.model, args.repository, args.version)
    if not version.has_variant("fp32"):
        raise ModelNotFoundError(f"{version.name} v{version.version} has no fp32 variant; run `pointserve export`")
    fp32 = version.variant_path("fp32")
    with console.status(f"drawing {args.num_samples} calibration clouds from {version.card.dataset or 'the data'}"):
        calibration = build_calibration_set(
            version.card,
            version.calibration_dir,
            num_samples=args.num_samples,
            seed=args.seed,
            dataset_root=args.data_root,
            progress=False,
        )
    console.print(
        f"calibration set {calibration.path} ({calibration.num_samples} clouds x {calibration.num_points} points, "
        f"seed {calibration.seed}, sha256 {calibration.sha256[:16]}...)"
    )
    with tempfile.TemporaryDirectory(dir=version.path, prefix=".calibrate-") as tmp:
        result = quantize_int8(
            fp32,
            calibration.path,
            Path(tmp) / "int8.onnx",
            method=args.method,
            keep_input_layers_float=keep_input_layers_float_for(version.card.task),
            version_dir=version.path,
            progress=True,
        )
        summary = check_qdq_graph(result.path)
        version.add_variant(
            "int8", result.path, precision="int8", backend="onnxruntime", source="fp32", calibration=result.calibration
        )
    scales = "reused from cache" if result.cache_hit else "computed"
    console.print(
        f"int8 variant of {version.name} v{version.version}: {args.method} scales {scales} ({result.cache_path.name}), "
        f"{summary.quantize_nodes} Q / {summary.dequantize_nodes} DQ nodes, {summary.per_channel_weights} per-channel "
        f"weights, all zero points 0, in {result.elapsed_s:.1f}s"
    )
    return 0
