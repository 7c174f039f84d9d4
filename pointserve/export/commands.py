"""``pointserve export``: a checkpoint -> a new model version in the repository, with its fp32 ONNX graph."""

from __future__ import annotations

import argparse

from pointserve.arguments import DEFAULT_REPOSITORY


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX (fp32, dynamic batch and points) as a new model version",
        description="Export CHECKPOINT (model.safetensors + card.json) to a self-contained fp32 ONNX graph, "
        "check it (onnx.checker, parity with PyTorch on several batch sizes and point counts) and store it as "
        "a new version <DIR>/<name>/<version>/ of the model repository.",
    )
    parser.add_argument("checkpoint", help="checkpoint folder (model.safetensors + card.json)")
    parser.add_argument("-o", "--output", default=DEFAULT_REPOSITORY, help="repository folder (default ./repository)")
    parser.add_argument("--name", help="model name (default: <dataset>-<cls|partseg|seg>, e.g. shapes-cls)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset, >= 17 (default 18)")
    parser.add_argument("--no-simplify", action="store_true", help="skip onnxsim graph simplification")
    parser.add_argument(
        "--allow-trt-incompatible",
        action="store_true",
        help="export even if the TensorRT lint fails (TopK with K > 3840, scatter with reduction, custom ops, "
        "dynamic loop counts); the findings are printed and recorded in the manifest",
    )
    parser.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from pointserve.export.publish import publish_checkpoint

    console = Console()
    with console.status("exporting") as status:
        version, report = publish_checkpoint(
            args.checkpoint,
            args.output,
            args.name,
            opset=args.opset,
            simplify=not args.no_simplify,
            status=lambda text: status.update(text),
            allow_trt_incompatible=args.allow_trt_incompatible,
        )
    name = version.name

    table = Table(title=f"parity with PyTorch (tolerance {report.parity_tolerance:g})")
    for column in ("batch", "points", "max |Δlogit|", "argmax equal"):
        table.add_column(column, justify="right")
    for result in report.parity:
        table.add_row(str(result.batch), str(result.num_points), f"{result.max_abs_diff:.2e}", str(result.argmax_equal))
    console.print(table)
    for finding in report.tensorrt_lint:
        console.print(
            f"TensorRT lint {finding['severity']}: node {finding['node']!r} ({finding['op_type']}): "
            f"{finding['reason']}",
            style="yellow",
            markup=False,
            highlight=False,
        )
    if report.simplify_error:
        console.print(f"[yellow]graph not simplified: {report.simplify_error}[/yellow]")
    console.print(
        f"exported {name} v{version.version}: {version.path / 'fp32.onnx'} (opset {report.opset}, "
        f"{report.num_nodes} nodes, {report.size_bytes / 2**20:.1f} MiB) in {report.export_time_s:.1f}s"
    )
    return 0
