"""``pointserve import-checkpoint``: turn weights trained elsewhere into a pointserve checkpoint.

Registered without importing torch; the handler imports the importer when it runs.
"""

from __future__ import annotations

import argparse

from pointserve.arguments import positive_int
from pointserve.errors import ConfigError

FORMATS = ("pointnet.pytorch",)
TASKS = ("classification", "part_segmentation", "semantic_segmentation")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-checkpoint",
        help="convert a checkpoint trained with another project into a pointserve checkpoint",
        description=(
            "Convert a checkpoint trained elsewhere into a pointserve checkpoint folder (model.safetensors + "
            "card.json). pointnet.pytorch: a .pth state dict of PointNetCls or PointNetDenseCls (with or without "
            "--feature_transform), or the same state dict saved as .safetensors; the .pth is read with torch's "
            "weights-only loader. The kind of network, the feature transform and the number of classes are read "
            "from the file."
        ),
    )
    parser.add_argument("path", help="the checkpoint file (.pth state dict or .safetensors)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="the project that saved it")
    names = parser.add_mutually_exclusive_group(required=True)
    names.add_argument("--classes", help="comma-separated class names (per-point labels for dense models), in order")
    names.add_argument(
        "--classes-file", help="a file with one class name per line, or 'name index' lines (misc/modelnet_id.txt)"
    )
    parser.add_argument("--task", choices=TASKS, help="what the model does (default: read from the checkpoint)")
    parser.add_argument(
        "--num-points", type=positive_int, default=2500, help="points per cloud used in training (default: 2500)"
    )
    parser.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="the checkpoint folder to write")
    parser.set_defaults(handler=run_import)


def _class_names(args: argparse.Namespace) -> list[str]:
    from pointserve.checkpoint.importers.pointnet_pytorch import read_class_names

    if args.classes_file:
        return read_class_names(args.classes_file)
    names = [name.strip() for name in args.classes.split(",")]
    if not all(names):
        raise ConfigError(f"--classes {args.classes!r}: empty class name")
    return names


def run_import(args: argparse.Namespace) -> int:
    from pointserve.checkpoint.importers.pointnet_pytorch import import_pointnet_pytorch

    card = import_pointnet_pytorch(
        args.path, args.output, _class_names(args), task=args.task, num_points=args.num_points
    )
    print(
        f"imported {card.source} -> {args.output} "
        f"({card.architecture}, {card.task}, {card.num_outputs} outputs, {card.num_points} points per cloud)"
    )
    return 0
