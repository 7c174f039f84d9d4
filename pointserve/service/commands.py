"""``pointserve serve`` (and :func:`serve` for ``pointserve quickstart``); ``pointserve loadgen`` is the bench's.

Handlers import the service (FastAPI, uvicorn, onnxruntime) only when they run.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="serve the models of a repository over HTTP (REST v1, Open Inference Protocol v2)",
        description=(
            "Load every model of the repository (latest version unless pinned in the config) with the best "
            "available backend and serve it. Settings: flags > POINTSERVE_* environment > --config file."
        ),
    )
    serve.add_argument("--repository", "-r", help="model repository folder (default: ./repository)")
    serve.add_argument("--host", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: 8000)")
    serve.add_argument("--config", help="YAML or JSON settings file")
    serve.add_argument("--max-batch-size", type=int, help="override batching.max_batch_size for every model")
    serve.add_argument("--log-format", choices=("json", "text"), help="log line format (default: json)")
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    code = serve(
        config=args.config,
        repository=args.repository,
        host=args.host,
        port=args.port,
        max_batch_size=args.max_batch_size,
        log_format=args.log_format,
    )
    from pointserve.service.server import exit_now

    exit_now(code)  # served and shut down: nothing is left for the interpreter's (slow) teardown to release
    return code  # pragma: no cover - exit_now does not return


def serve(
    *,
    config: str | Path | None = None,
    repository: str | Path | None = None,
    host: str | None = None,
    port: int | None = None,
    max_batch_size: int | None = None,
    log_format: str | None = None,
) -> int:
    """Load the settings (these arguments > POINTSERVE_* > the config file), open every model, serve until
    SIGTERM. A bad setting or repository raises a PointServeError before anything listens."""
    from pointserve.service.app import create_app
    from pointserve.service.logs import configure_logging
    from pointserve.service.served_model import open_models
    from pointserve.service.server import run_server
    from pointserve.service.settings import load_settings

    batching = {"max_batch_size": max_batch_size} if max_batch_size is not None else None
    settings = load_settings(
        config,
        repository=repository,
        host=host,
        port=port,
        log_format=log_format,
        batching=batching,  # merged with the file's and environment's batching settings
    )
    configure_logging(settings.log_level, settings.log_format)
    models = open_models(settings)  # a bad repository or file fails here, with one line
    run_server(create_app(settings, models=models), settings)
    return 0
