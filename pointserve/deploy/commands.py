"""``pointserve export-triton MODEL -o DIR``: a model version as a Triton model repository; ``pointserve deploy ray``:
Ray Serve replicas of the app (:mod:`pointserve.deploy.ray_serve`, Ray imported only when it runs)."""

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
    register_deploy(subparsers)


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


def register_deploy(subparsers: argparse._SubParsersAction) -> None:
    deploy = subparsers.add_parser(
        "deploy",
        help="run the service elsewhere: `deploy ray` (Ray Serve replicas, autoscaling)",
        description="Run the same app and batcher beyond one `pointserve serve` process.",
    )
    targets = deploy.add_subparsers(dest="target", metavar="TARGET", required=True)
    ray = targets.add_parser(
        "ray",
        help="Ray Serve: N replicas (or an autoscaling range) of the app, each with its own batcher",
        description="Write a Ray Serve config (the application builder pointserve.deploy.ray_serve:build_app, its "
        "args: the repository and the settings; replicas or autoscaling; max_ongoing_requests sized to the batcher; "
        "health checks; graceful shutdown) and run it on a local Ray cluster until Ctrl-C, or --print it for "
        "`serve deploy` / KubeRay. Needs `pip install 'pointserve[ray]'` to run. See docs/scaleout.md.",
    )
    count = ray.add_mutually_exclusive_group()
    count.add_argument("--replicas", type=positive_int, help="a fixed number of replicas (default 1)")
    count.add_argument("--autoscale", metavar="MIN:MAX", help="autoscale between MIN and MAX replicas")
    ray.add_argument(
        "--target-ongoing",
        type=float,
        metavar="R",
        help="--autoscale: ongoing requests per replica Serve aims at (default: the largest max_batch_size)",
    )
    ray.add_argument("--repository", "-r", help="model repository folder (default: ./repository)")
    ray.add_argument("--config", help="a `pointserve serve` settings file (YAML or JSON) for the replicas")
    ray.add_argument("--host", help="address Serve's HTTP proxy binds (default: 127.0.0.1, this machine only)")
    ray.add_argument("--port", type=int, help="the proxy's port (default: 8000)")
    ray.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per replica (ONNX Runtime threads; default 1)")
    ray.add_argument(
        "--max-ongoing-requests",
        type=positive_int,
        help="requests one replica holds at once (default: sized to the batcher: queue bound + max batch)",
    )
    ray.add_argument(
        "--graceful-shutdown-timeout-s", type=float, help="drain time for a stopping replica (default: drain_timeout_s)"
    )
    ray.add_argument("--output", "-o", help="write the Serve config here (default when running: ./serve-config.yaml)")
    ray.add_argument("--print", action="store_true", help="print the config (for `serve deploy` / KubeRay), don't run")
    ray.add_argument("--cluster-cpus", type=int, help="CPUs of the local Ray cluster when running (default: all)")
    ray.set_defaults(handler=_deploy_ray)


def _deploy_ray(args: argparse.Namespace) -> int:
    from pointserve.deploy.ray_serve import (
        DEFAULT_HOST,
        DEFAULT_PORT,
        config_yaml,
        parse_autoscale,
        run_local,
        serve_config,
        write_config,
    )
    from pointserve.service.settings import load_settings

    settings = load_settings(args.config, repository=args.repository)
    config = serve_config(
        settings,
        host=args.host or DEFAULT_HOST,
        port=args.port if args.port is not None else DEFAULT_PORT,
        replicas=args.replicas,
        autoscale=parse_autoscale(args.autoscale) if args.autoscale else None,
        target_ongoing=args.target_ongoing,
        num_cpus=args.num_cpus,
        max_ongoing_requests=args.max_ongoing_requests,
        graceful_shutdown_timeout_s=args.graceful_shutdown_timeout_s,
    )
    if args.print:
        if args.output:
            write_config(config, args.output)
        print(config_yaml(config), end="")
        return 0
    path = write_config(config, args.output or "serve-config.yaml")
    print(f"wrote {path}", flush=True)
    run_local(config, num_cpus=args.cluster_cpus)
    return 0
