"""``pointserve export-triton MODEL -o DIR``: a model version as a Triton model repository."""

from __future__ import annotations

import argparse

from pointserve.arguments import add_model_version_args, int_list, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-triton",
        help="write a model version as a Triton model repository (config.pbtxt, labels, the ONNX or plan file)",
        description="Write DIR/<model>/config.pbtxt (max_batch_size, dims, dynamic batching, instance group, "
        "labels), DIR/<model>/labels.txt and DIR/<model>/1/model.onnx (or model.plan for a TensorRT variant), and "
        "DIR/README.md saying what pointserve does around the graph that Triton does not. The batching defaults "
        "are `pointserve serve`'s; --config takes them from a serve config file instead.",
    )
    add_model_version_args(parser)
    parser.add_argument("-o", "--output", required=True, help="Triton model repository folder (created if missing)")
    parser.add_argument("--variant", default="fp32", help="the variant to export (default fp32)")
    parser.add_argument("--config", help="a `pointserve serve` config file: take this model's batching from it")
    parser.add_argument("--max-batch-size", type=positive_int, help="Triton's max_batch_size (default 32)")
    parser.add_argument(
        "--max-queue-delay-ms", type=float, help="dynamic batching's max_queue_delay, in ms (default 0)"
    )
    parser.add_argument("--preferred-batch-size", type=int_list, help="dynamic batching's preferred sizes, e.g. 8,16")
    parser.add_argument("--instances", type=positive_int, help="model instances (default 1)")
    parser.add_argument(
        "--instance-kind", choices=["cpu", "gpu"], help="where instances run (default: gpu for a plan, else cpu)"
    )
    parser.add_argument("--force", action="store_true", help="replace DIR/<model> if an earlier export left it")
    parser.set_defaults(handler=_export_triton)


def _export_triton(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pointserve.deploy.triton import export_triton
    from pointserve.repository.commands import resolve_model_version

    model_version = resolve_model_version(args.model, args.repository, args.version)
    options: dict = {}
    if args.config:  # the batching `pointserve serve --config FILE` would use for this model
        from pointserve.service.settings import load_settings

        batching = load_settings(args.config).batching_for(model_version.name)
        options = {
            "max_batch_size": batching.max_batch_size,
            "max_queue_delay_ms": batching.max_queue_delay_ms,
            "preferred_batch_sizes": (batching.preferred_batch_size,) if batching.preferred_batch_size else (),
            "instance_count": batching.instance_count,
        }
    flags = {
        "max_batch_size": args.max_batch_size,
        "max_queue_delay_ms": args.max_queue_delay_ms,
        "preferred_batch_sizes": tuple(args.preferred_batch_size) if args.preferred_batch_size else None,
        "instance_count": args.instances,
        "instance_kind": f"KIND_{args.instance_kind.upper()}" if args.instance_kind else None,
    }
    options.update({key: value for key, value in flags.items() if value is not None})
    result = export_triton(model_version, args.output, variant=args.variant, force=args.force, **options)

    console = Console()
    config = result.config
    console.print(
        f"exported {model_version.name} v{model_version.version} ({args.variant}) to {result.model_dir}: "
        f"{config['platform']}, max_batch_size {config['max_batch_size']}, "
        f"{config['instance_group'][0]['count']} x {config['instance_group'][0]['kind']}",
        soft_wrap=True,
    )
    console.print(f"  {result.config_file}")
    if result.labels_file is not None:
        console.print(f"  {result.labels_file}")
    console.print(f"  {result.model_file} ({result.model_file.stat().st_size / 2**20:.1f} MiB)")
    console.print(f"  {result.readme}")
    console.print("what does not travel to Triton (also in the README):")
    for note in result.notes:
        console.print(f"  - {note}", highlight=False, soft_wrap=True)
    return 0
