"""Command-line arguments every stage's ``commands`` module shares, defined once: argument types and the
"which model version" group. Choices that come from a vocabulary (precisions, backends, calibration methods)
are passed in by the command from the module that defines them."""

from __future__ import annotations

import argparse

DEFAULT_REPOSITORY = "repository"


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def int_list(text: str) -> list[int]:
    """An argparse type: a non-empty comma-separated list of positive integers (``1,8,32``)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def add_model_version_args(parser: argparse.ArgumentParser, *, model_help: str | None = None) -> None:
    """``MODEL`` (a version folder, a model folder or a model name), ``--repository`` and ``--version``."""
    parser.add_argument(
        "model",
        help=model_help or "a version folder (repository/NAME/N), a model folder (latest) or a model name[:version]",
    )
    parser.add_argument(
        "--repository",
        default=DEFAULT_REPOSITORY,
        help=f"repository folder for model names (default ./{DEFAULT_REPOSITORY})",
    )
    parser.add_argument("--version", type=int, help="version number (default: the latest)")


__all__ = ["DEFAULT_REPOSITORY", "add_model_version_args", "int_list", "positive_int"]
