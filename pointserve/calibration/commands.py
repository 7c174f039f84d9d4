"""``pointserve calibrate``: build a model version's calibration set and its int8 Q/DQ variant."""

from __future__ import annotations

import argparse

from pointserve.arguments import add_model_version_args
from pointserve.calibration.dataset import DEFAULT_NUM_SAMPLES
from pointserve.calibration.quantize import METHODS
from pointserve.calibration.sources import CALIBRATION_DATA_HELP


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="build the calibration set and the int8 (Q/DQ) ONNX variant of a model version",
        description="Draw clouds from the model's training split (or from --calibration-data) with the training "
        "transforms, save them as <version>/calibration/*.npz (hash recorded), compute symmetric int8 scales "
        "(cached) and store the int8 Q/DQ graph as the version's 'int8' variant.",
    )
    add_model_version_args(parser)
    parser.add_argument("--num-samples", type=int, default=DEFAULT_NUM_SAMPLES, help="calibration clouds (256)")
    parser.add_argument("--seed", type=int, default=0, help="seed for drawing and augmenting the clouds (0)")
    parser.add_argument("--method", choices=METHODS, default="minmax", help="calibration method (minmax)")
    parser.add_argument("--data-root", help="dataset folder, for datasets read from disk (not needed for shapes)")
    parser.add_argument("--calibration-data", metavar="SPEC", help=CALIBRATION_DATA_HELP)
    parser.set_defaults(handler=_calibrate)


def _calibrate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pointserve.calibration.qdq import check_qdq_graph
    from pointserve.calibration.variant import make_int8_variant
    from pointserve.repository.commands import resolve_model_version

    console = Console()
    version = resolve_model_version(args.model, args.repository, args.version)
    result = make_int8_variant(
        version,
        method=args.method,
        num_samples=args.num_samples,
        seed=args.seed,
        dataset_root=args.data_root,
        calibration_data=args.calibration_data,
        progress=True,
    )
    calibration = result.calibration
    console.print(
        f"calibration set {version.path / calibration.file} ({calibration.num_samples} clouds x "
        f"{version.card.num_points} points, seed {calibration.seed}, sha256 {calibration.data_hash[:16]}...) "
        f"from {calibration.source}"
    )
    summary = check_qdq_graph(result.path)  # the placed file: the counts below describe what is served
    scales = "reused from cache" if result.cache_hit else "computed"
    console.print(
        f"int8 variant of {version.name} v{version.version}: {args.method} scales {scales} ({result.cache_path.name}), "
        f"{summary.quantize_nodes} Q / {summary.dequantize_nodes} DQ nodes, {summary.per_channel_weights} per-channel "
        f"weights, all zero points 0, in {result.elapsed_s:.1f}s"
    )
    return 0
