"""``pointserve calibrate``: build a model version's calibration set and its int8 Q/DQ variant."""

from __future__ import annotations

import argparse

from pointserve.arguments import add_model_version_args
from pointserve.calibration.dataset import DEFAULT_NUM_SAMPLES
from pointserve.calibration.quantize import METHODS
from pointserve.calibration.search import DEFAULT_HELDOUT_FRACTION, GUARDED_NUM_SAMPLES
from pointserve.calibration.sources import CALIBRATION_DATA_HELP


def add_search_args(parser: argparse.ArgumentParser) -> None:
    """The accuracy-guarded int8 flags, shared by ``calibrate`` and ``build``."""
    parser.add_argument(
        "--target-agreement",
        type=float,
        default=None,
        metavar="A",
        help="accuracy-guarded int8: keep the layers int8 hurts most in float until the int8 graph's argmax agrees "
        "with fp32 on at least this fraction of held-out calibration clouds (or points), e.g. 0.99",
    )
    parser.add_argument(
        "--search-methods",
        default=",".join(METHODS),
        help="with --target-agreement: calibration methods to try, comma list (default: all)",
    )
    parser.add_argument(
        "--heldout-fraction",
        type=float,
        default=DEFAULT_HELDOUT_FRACTION,
        help=f"with --target-agreement: part of the calibration set held out to judge on ({DEFAULT_HELDOUT_FRACTION})",
    )


def search_options(args: argparse.Namespace) -> dict:
    """``make_int8_variant`` keywords from :func:`add_search_args`' flags (empty without --target-agreement)."""
    if args.target_agreement is None:
        return {}
    methods = tuple(m.strip() for m in args.search_methods.split(",") if m.strip())
    return {"target_agreement": args.target_agreement, "methods": methods, "heldout_fraction": args.heldout_fraction}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="build the calibration set and the int8 (Q/DQ) ONNX variant of a model version",
        description="Draw clouds from the model's training split (or from --calibration-data) with the training "
        "transforms, save them as <version>/calibration/*.npz (hash recorded), compute symmetric int8 scales "
        "(cached) and store the int8 Q/DQ graph as the version's 'int8' variant.",
    )
    add_model_version_args(parser)
    parser.add_argument(
        "--num-samples",
        type=int,
        default=None,
        help=f"calibration clouds ({DEFAULT_NUM_SAMPLES}; {GUARDED_NUM_SAMPLES} with --target-agreement, split in two)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for drawing and augmenting the clouds (0)")
    parser.add_argument("--method", choices=METHODS, default="minmax", help="calibration method (minmax)")
    add_search_args(parser)
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
        log=console.print,
        **search_options(args),
    )
    calibration = result.calibration
    used = f"{calibration.num_samples} clouds"
    if calibration.search is not None:
        used = f"{calibration.num_samples} clouds calibrate, {calibration.search.heldout_samples} held out"
    console.print(
        f"calibration set {version.path / calibration.file} ({used} x "
        f"{version.card.num_points} points, seed {calibration.seed}, sha256 {calibration.data_hash[:16]}...) "
        f"from {calibration.source}"
    )
    summary = check_qdq_graph(result.path)  # the placed file: the counts below describe what is served
    scales = "reused from cache" if result.cache_hit else "computed"
    console.print(
        f"int8 variant of {version.name} v{version.version}: {result.method} scales {scales} "
        f"({result.cache_path.name}), "
        f"{summary.quantize_nodes} Q / {summary.dequantize_nodes} DQ nodes, {summary.per_channel_weights} per-channel "
        f"weights, all zero points 0, in {result.elapsed_s:.1f}s"
    )
    if calibration.search is not None:
        from pointserve.repository.commands import print_search

        print_search(console, calibration.search)
        if not calibration.search.reached_target:
            console.print("[red]the int8 graph does not reach the target agreement: it is stored, closest to it[/red]")
            return 1
    return 0
