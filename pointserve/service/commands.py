"""``pointserve serve`` (and :func:`serve` for ``pointserve quickstart``), ``pointserve render`` (a picture of a
running server's answer for one cloud); ``pointserve loadgen`` is the bench's.

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
    serve.add_argument(
        "--model-control",
        choices=("none", "explicit", "poll"),
        help="none (default): models load at start-up only; explicit: POST /v2/repository/models/{m}/load and "
        "/unload switch versions live; poll: follow the repository folder (Triton's model control modes)",
    )
    serve.add_argument(
        "--repository-poll-interval-s",
        type=float,
        metavar="SECONDS",
        help="poll mode: seconds between two looks at the repository folder (default: 15)",
    )
    serve.add_argument(
        "--load-model",
        action="append",
        metavar="MODEL",
        help="explicit mode: load only this model at start (repeatable; default: every enabled model)",
    )
    serve.set_defaults(handler=_serve)

    render = subparsers.add_parser(
        "render",
        help="draw a cloud coloured by the parts a running server predicts (PNG)",
        description=(
            "Read a cloud (.ply .pcd .xyz .txt .npy .las .laz), send it to a running server's v1 predict endpoint "
            "and draw it: coloured by predicted part for a segmentation model (legend: the model card's part "
            "names), in one colour with class and score in the title for a classifier. Needs matplotlib."
        ),
    )
    render.add_argument("file", help="the point-cloud file")
    render.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL (loopback only by default)")
    render.add_argument("--model", "-m", required=True, help="model name")
    render.add_argument("--category", "-c", help="part segmentation: the object's category (name or id)")
    render.add_argument("--output", "-o", default="render.png", help="PNG to write (default: render.png)")
    render.add_argument("--up", choices=("y", "z"), default="y", help="the cloud's vertical axis (default: y)")
    render.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the answer")
    render.add_argument("--allow-remote", action="store_true", help="allow a server that is not on this machine")
    render.set_defaults(handler=_render)


def _serve(args: argparse.Namespace) -> int:
    code = serve(
        config=args.config,
        repository=args.repository,
        host=args.host,
        port=args.port,
        max_batch_size=args.max_batch_size,
        log_format=args.log_format,
        model_control=args.model_control,
        repository_poll_interval_s=args.repository_poll_interval_s,
        startup_models=args.load_model,
    )
    from pointserve.service.server import exit_now

    exit_now(code)  # served and shut down: nothing is left for the interpreter's (slow) teardown to release
    return code  # pragma: no cover - exit_now does not return


def _render(args: argparse.Namespace) -> int:
    path = render_from_server(
        args.file,
        url=args.url,
        model=args.model,
        category=args.category,
        output=args.output,
        up=args.up,
        timeout_s=args.timeout,
        allow_remote=args.allow_remote,
    )
    print(path)
    return 0


def render_from_server(
    file: str | Path,
    *,
    url: str,
    model: str,
    output: str | Path,
    category: str | None = None,
    up: str = "y",
    timeout_s: float = 60.0,
    allow_remote: bool = False,
) -> Path:
    """Upload ``file`` to ``url``'s ``/v1/models/{model}/predict`` as it is (the server reads the channels its
    model takes), draw the answer (labels are in the file's point order) and write the PNG to ``output``."""
    import httpx

    from pointserve.bench.loadgen import check_loopback
    from pointserve.data.formats import read_file_bytes, read_point_cloud
    from pointserve.errors import ConfigError, InputError
    from pointserve.render import MATPLOTLIB_HINT, answer_title, matplotlib_available, render_png

    if not matplotlib_available():
        raise ConfigError(f"pointserve render needs matplotlib: {MATPLOTLIB_HINT}")
    if not allow_remote:
        check_loopback(url)
    file = Path(file)
    data = read_file_bytes(file)
    points = read_point_cloud(data, filename=str(file))  # (N, 3), file order
    params = {"category": category} if category is not None else {}
    try:
        response = httpx.post(
            f"{url.rstrip('/')}/v1/models/{model}/predict",
            params=params,
            files={"file": (file.name, data)},
            timeout=timeout_s,
        )
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot reach {url}: {exc}") from None
    if response.status_code != 200:
        try:
            reason = response.json().get("error", response.text)
        except ValueError:
            reason = response.text
        raise InputError(f"{url} answered {response.status_code}: {str(reason)[:500]}")
    answer = response.json()
    title = answer_title(
        answer.get("model", model), answer.get("version", "?"), source=file.name, category=answer.get("category")
    )
    if "labels" in answer:  # segmentation
        png = render_png(points, answer["labels"], answer["label_names"], title=title, up=up)
    else:  # classification: one colour, the class in the title
        title += f"\n{answer['label']} ({answer['score']:.1%})"
        png = render_png(points, None, title=title, up=up)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(png)
    return output


def serve(
    *,
    config: str | Path | None = None,
    repository: str | Path | None = None,
    host: str | None = None,
    port: int | None = None,
    max_batch_size: int | None = None,
    log_format: str | None = None,
    model_control: str | None = None,
    repository_poll_interval_s: float | None = None,
    startup_models: list[str] | None = None,
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
        model_control=model_control,
        repository_poll_interval_s=repository_poll_interval_s,
        startup_models=startup_models,
        batching=batching,  # merged with the file's and environment's batching settings
    )
    configure_logging(settings.log_level, settings.log_format)
    models = open_models(settings)  # a bad repository or file fails here, with one line
    run_server(create_app(settings, models=models), settings)
    return 0
