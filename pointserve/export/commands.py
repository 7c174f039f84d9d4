"""``pointserve export``: a checkpoint -> a new model version in the repository, with its fp32 ONNX graph."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_REPOSITORY = "repository"
_TASK_SUFFIX = {"classification": "cls", "part_segmentation": "partseg", "semantic_segmentation": "seg"}


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
    parser.set_defaults(handler=_export)


def default_model_name(card) -> str:
    return f"{card.dataset or card.architecture}-{_TASK_SUFFIX.get(card.task, card.task)}"


def _export(args: argparse.Namespace) -> int:
    import tempfile

    from rich.console import Console
    from rich.table import Table

    from pointserve.export.onnx_export import DEFAULT_OPSET, export_model
    from pointserve.repository.store import Repository, check_name
    from pointserve.training.checkpoint import load_checkpoint

    console = Console()
    model, card = load_checkpoint(args.checkpoint)
    name = check_name(args.name or default_model_name(card))
    repository = Repository(args.output)
    repository.root.mkdir(parents=True, exist_ok=True)
    fp32_tmp_dir = tempfile.TemporaryDirectory(dir=repository.root, prefix=".export-")
    # Written next to the repository first: the version folder only appears once the graph passed.
    with console.status(f"exporting {card.architecture} to ONNX and checking parity"), fp32_tmp_dir as tmp:
        onnx_path = Path(tmp) / "fp32.onnx"
        opset = args.opset or DEFAULT_OPSET
        report = export_model(model, card, onnx_path, opset=opset, simplify_graph=not args.no_simplify)
        version = repository.create_version(
            name, card=card, inputs=report.inputs, outputs=report.outputs, export_report=report.manifest_dict()
        )
        version.add_variant("fp32", onnx_path, precision="fp32", backend="onnxruntime")

    table = Table(title=f"parity with PyTorch (tolerance {report.parity_tolerance:g})")
    for column in ("batch", "points", "max |Δlogit|", "argmax equal"):
        table.add_column(column, justify="right")
    for result in report.parity:
        table.add_row(str(result.batch), str(result.num_points), f"{result.max_abs_diff:.2e}", str(result.argmax_equal))
    console.print(table)
    if report.simplify_error:
        console.print(f"[yellow]graph not simplified: {report.simplify_error}[/yellow]")
    console.print(
        f"exported {name} v{version.version}: {version.path / 'fp32.onnx'} (opset {report.opset}, "
        f"{report.num_nodes} nodes, {report.size_bytes / 2**20:.1f} MiB) in {report.export_time_s:.1f}s"
    )
    return 0
