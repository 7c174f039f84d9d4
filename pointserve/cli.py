"""The ``pointserve`` command.

Each pipeline stage contributes its sub-commands from a small ``commands`` module that registers argparse
parsers without importing heavy runtimes; a command's handler imports what it needs when it runs, so
``pointserve --help`` and ``pointserve serve`` never import torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pointserve import __version__
from pointserve.errors import PointServeError

# Modules with a ``register(subparsers)`` function, in pipeline order.
COMMAND_MODULES = (
    "pointserve.training.commands",
    "pointserve.checkpoint.commands",
    "pointserve.export.commands",
    "pointserve.calibration.commands",
    "pointserve.engines.commands",
    "pointserve.repository.commands",
    "pointserve.service.commands",
    "pointserve.bench.commands",
    "pointserve.deploy.commands",
    "pointserve.quickstart",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pointserve",
        description="Train, export, quantize, build and serve point-cloud networks.",
    )
    parser.add_argument("--version", action="version", version=f"pointserve {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        result = args.handler(args)
    except PointServeError as exc:
        # One clear line, no traceback: these are the user's errors (a bad file, a bad flag), not ours.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
