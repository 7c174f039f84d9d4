"""``pointserve import-checkpoint``: turn weights trained elsewhere into a pointserve checkpoint.

Registered without importing torch; the handler imports the importer when it runs.
"""

from __future__ import annotations

import argparse

from pointserve.arguments import positive_int
from pointserve.errors import ConfigError

FORMATS = ("pointnet.pytorch", "dgcnn.antao97", "pointnet2.yanx27")
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
            "from the file. dgcnn.antao97: a DGCNN_cls or DGCNN_partseg state dict (model.t7, saved from "
            "DataParallel), read with the weights-only loader; give --k if it was not trained with k = 20."
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
        "--num-points",
        type=positive_int,
        help="points per cloud used in training (default: the format's: pointnet.pytorch 2500, dgcnn.antao97 1024 "
        "classification / 2048 part segmentation)",
    )
    parser.add_argument(
        "--parts", help="dgcnn.antao97 part segmentation: comma-separated part names (default: ShapeNet-part's 50)"
    )
    parser.add_argument(
        "--k", type=positive_int, default=20, help="dgcnn.antao97: neighbours per point it was trained with (20)"
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
    if args.format == "pointnet2.yanx27":
        from pointserve.checkpoint.importers.pointnet2_yanx27 import import_pointnet2_yanx27

        parts = [name.strip() for name in args.parts.split(",")] if args.parts else None
        card = import_pointnet2_yanx27(
            args.path, args.output, _class_names(args), parts, task=args.task, num_points=args.num_points
        )
    elif args.format == "dgcnn.antao97":
        from pointserve.checkpoint.importers.dgcnn_antao97 import import_dgcnn_antao97

        parts = [name.strip() for name in args.parts.split(",")] if args.parts else None
        card = import_dgcnn_antao97(
            args.path, args.output, _class_names(args), parts, k=args.k, task=args.task, num_points=args.num_points
        )
    else:
        from pointserve.checkpoint.importers.pointnet_pytorch import import_pointnet_pytorch

        card = import_pointnet_pytorch(
            args.path, args.output, _class_names(args), task=args.task, num_points=args.num_points or 2500
        )
    print(
        f"imported {card.source} -> {args.output} "
        f"({card.architecture}, {card.task}, {card.num_outputs} outputs, {card.num_points} points per cloud)"
    )
    return 0
